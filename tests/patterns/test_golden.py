"""Exact expected output for every operator and combination, per target language.

Small field maps keep the strings readable; the built-in maps are covered at the end and in test_maps.
"""

from __future__ import annotations

from typing import Any

import pytest

from ctibridge.patterns import FieldMap, Untranslatable, translate

GOLDEN_MAP = FieldMap.from_data(
    {
        "timestamp_field": "@timestamp",
        "types": {
            "ip": ["src.ip", "dst.ip"],
            "long": ["port", "file.size"],
            "date": ["@timestamp", "file.created"],
        },
        "fields": {
            "ipv4-addr:value": ["src.ip", "dst.ip"],
            "domain-name:value": ["dns.name"],
            "file:name": ["file.name"],
            "file:size": ["file.size"],
            "file:ctime": ["file.created"],
            "network-traffic:dst_port": ["port"],
            "process:command_line": ["cmd"],
        },
    },
    name="golden",
)

KUSTO_MAP = FieldMap.from_data(
    {
        "timestamp_field": "Timestamp",
        "types": {
            "ip": ["Net.SrcIp", "Net.DstIp"],
            "long": ["Net.Port", "File.Size"],
            "date": ["Timestamp", "File.Created"],
        },
        "fields": {
            "ipv4-addr:value": ["Net.SrcIp", "Net.DstIp"],
            "domain-name:value": ["Dns.QueryName"],
            "file:name": ["File.FileName", "Proc.FileName"],
            "file:size": ["File.Size"],
            "file:ctime": ["File.Created"],
            "network-traffic:dst_port": ["Net.Port"],
            "process:command_line": ["Proc.CommandLine"],
        },
    },
    name="kusto-golden",
)

ESQL = "FROM logs-* METADATA _id, _index, _version | WHERE "
NO_KQL_REGEX = Untranslatable("KQL has no regular expressions")
NO_EQL_DATES = Untranslatable("EQL cannot compare dates")
OBS_AND = Untranslatable("observation-level AND correlates separate events")

GOLDEN: dict[str, dict[str, Any]] = {
    "[domain-name:value = 'evil.com']": {
        "kql": 'dns.name: "evil.com"',
        "lucene": 'dns.name:"evil.com"',
        "eql": 'any where ?dns.name == "evil.com"',
        "esql": ESQL + 'dns.name == "evil.com"',
        "opensearch": {"term": {"dns.name": "evil.com"}},
        "kusto": 'Dns | where QueryName == "evil.com"',
    },
    "[domain-name:value != 'evil.com']": {
        "kql": 'dns.name: * and not dns.name: "evil.com"',
        "lucene": '_exists_:dns.name AND NOT dns.name:"evil.com"',
        "eql": 'any where ?dns.name != null and not (?dns.name == "evil.com")',
        "esql": ESQL + 'dns.name IS NOT NULL AND NOT (dns.name == "evil.com")',
        "opensearch": {
            "bool": {
                "filter": [{"exists": {"field": "dns.name"}}],
                "must_not": [{"term": {"dns.name": "evil.com"}}],
            }
        },
        "kusto": 'Dns | where isnotempty(QueryName) and not(QueryName == "evil.com")',
    },
    "[network-traffic:dst_port > 1024]": {
        "kql": "port > 1024",
        "lucene": 'port:{"1024" TO *]',
        "eql": "any where ?port > 1024",
        "esql": ESQL + "port > 1024",
        "opensearch": {"range": {"port": {"gt": 1024}}},
        "kusto": "Net | where Port > 1024",
    },
    "[network-traffic:dst_port >= 1024]": {
        "kql": "port >= 1024",
        "lucene": 'port:["1024" TO *]',
        "eql": "any where ?port >= 1024",
        "esql": ESQL + "port >= 1024",
        "opensearch": {"range": {"port": {"gte": 1024}}},
        "kusto": "Net | where Port >= 1024",
    },
    "[network-traffic:dst_port < 1024]": {
        "kql": "port < 1024",
        "lucene": 'port:[* TO "1024"}',
        "eql": "any where ?port < 1024",
        "esql": ESQL + "port < 1024",
        "opensearch": {"range": {"port": {"lt": 1024}}},
        "kusto": "Net | where Port < 1024",
    },
    "[network-traffic:dst_port <= 1024]": {
        "kql": "port <= 1024",
        "lucene": 'port:[* TO "1024"]',
        "eql": "any where ?port <= 1024",
        "esql": ESQL + "port <= 1024",
        "opensearch": {"range": {"port": {"lte": 1024}}},
        "kusto": "Net | where Port <= 1024",
    },
    "[file:name NOT < 'm']": {
        "kql": 'file.name: * and not file.name < "m"',
        "lucene": '_exists_:file.name AND NOT file.name:[* TO "m"}',
        "eql": 'any where ?file.name != null and not (?file.name < "m")',
        "esql": ESQL + 'file.name IS NOT NULL AND NOT (file.name < "m")',
        "opensearch": {
            "bool": {
                "filter": [{"exists": {"field": "file.name"}}],
                "must_not": [{"range": {"file.name": {"lt": "m"}}}],
            }
        },
        "kusto": "union isfuzzy=true File, Proc | where "
        'isnotempty(FileName) and not(strcmp(FileName, "m") < 0)',
    },
    "[domain-name:value IN ('a.com', 'b.com')]": {
        "kql": 'dns.name: ("a.com" or "b.com")',
        "lucene": 'dns.name:("a.com" OR "b.com")',
        "eql": 'any where ?dns.name in ("a.com", "b.com")',
        "esql": ESQL + 'dns.name IN ("a.com", "b.com")',
        "opensearch": {"terms": {"dns.name": ["a.com", "b.com"]}},
        "kusto": 'Dns | where QueryName in ("a.com", "b.com")',
    },
    "[domain-name:value NOT IN ('a.com', 'b.com')]": {
        "kql": 'dns.name: * and not dns.name: ("a.com" or "b.com")',
        "lucene": '_exists_:dns.name AND NOT dns.name:("a.com" OR "b.com")',
        "eql": 'any where ?dns.name != null and not (?dns.name in ("a.com", "b.com"))',
        "esql": ESQL + 'dns.name IS NOT NULL AND NOT (dns.name IN ("a.com", "b.com"))',
        "opensearch": {
            "bool": {
                "filter": [{"exists": {"field": "dns.name"}}],
                "must_not": [{"terms": {"dns.name": ["a.com", "b.com"]}}],
            }
        },
        "kusto": 'Dns | where isnotempty(QueryName) and not(QueryName in ("a.com", "b.com"))',
    },
    "[file:name LIKE 'evil%.exe']": {
        "kql": "file.name: evil*.exe",
        "lucene": "file.name:evil*.exe",
        "eql": 'any where ?file.name like "evil*.exe"',
        "esql": ESQL + 'file.name LIKE "evil*.exe"',
        "opensearch": {"wildcard": {"file.name": {"value": "evil*.exe"}}},
        "kusto": 'union isfuzzy=true File, Proc | where FileName matches regex "(?s)^evil.*\\\\.exe$"',
    },
    "[file:name LIKE 'evil%']": {
        "kql": "file.name: evil*",
        "kusto": 'union isfuzzy=true File, Proc | where FileName startswith_cs "evil"',
    },
    "[file:name LIKE '%evil']": {
        "lucene": "file.name:*evil",
        "kusto": 'union isfuzzy=true File, Proc | where FileName endswith_cs "evil"',
    },
    "[file:name LIKE '%evil%']": {
        "kql": "file.name: *evil*",
        "kusto": 'union isfuzzy=true File, Proc | where FileName contains_cs "evil"',
    },
    "[file:name LIKE 'a_c']": {
        "kql": Untranslatable("KQL has no single-character wildcard"),
        "lucene": "file.name:a?c",
        "eql": 'any where ?file.name like "a?c"',
        "esql": ESQL + 'file.name LIKE "a?c"',
        "opensearch": {"wildcard": {"file.name": {"value": "a?c"}}},
        "kusto": 'union isfuzzy=true File, Proc | where FileName matches regex "(?s)^a.c$"',
    },
    "[file:name LIKE 'a*b%']": {
        "kql": "file.name: a\\*b*",
        "lucene": "file.name:a\\*b*",
        "eql": 'any where ?file.name regex "a\\\\*b.*"',
        "esql": ESQL + 'file.name LIKE "a\\\\*b*"',
        "opensearch": {"wildcard": {"file.name": {"value": "a\\*b*"}}},
        "kusto": 'union isfuzzy=true File, Proc | where FileName startswith_cs "a*b"',
    },
    "[file:name LIKE 'a<b%']": {
        "lucene": "file.name:/a\\<b.*/",
    },
    "[file:name NOT LIKE '%.tmp']": {
        "kql": "file.name: * and not file.name: *.tmp",
        "lucene": "_exists_:file.name AND NOT file.name:*.tmp",
        "eql": 'any where ?file.name != null and not (?file.name like "*.tmp")',
        "esql": ESQL + 'file.name IS NOT NULL AND NOT (file.name LIKE "*.tmp")',
        "opensearch": {
            "bool": {
                "filter": [{"exists": {"field": "file.name"}}],
                "must_not": [{"wildcard": {"file.name": {"value": "*.tmp"}}}],
            }
        },
        "kusto": "union isfuzzy=true File, Proc | where "
        'isnotempty(FileName) and not(FileName endswith_cs ".tmp")',
    },
    "[process:command_line MATCHES '^powershell.*-enc']": {
        "kql": NO_KQL_REGEX,
        "lucene": "cmd:/powershell[^\n]*\\-enc.*/",
        "eql": 'any where ?cmd regex "powershell[^\\n]*\\\\-enc.*"',
        "esql": ESQL + 'cmd RLIKE "powershell[^\\n]*\\\\-enc.*"',
        "opensearch": {"regexp": {"cmd": {"value": "powershell[^\n]*\\-enc.*"}}},
        "kusto": 'Proc | where CommandLine matches regex "^powershell.*\\\\-enc"',
    },
    "[process:command_line MATCHES 'evil(\\\\.exe)?$']": {
        "lucene": "cmd:/.*evil(\\.exe)?\n?/",
        "kusto": 'Proc | where CommandLine matches regex "evil(\\\\.exe)?\\n?$"',
    },
    "[ipv4-addr:value ISSUBSET '10.0.0.0/8']": {
        "kql": 'src.ip: "10.0.0.0/8" or dst.ip: "10.0.0.0/8"',
        "lucene": 'src.ip:"10.0.0.0/8" OR dst.ip:"10.0.0.0/8"',
        "eql": 'any where cidrMatch(?src.ip, "10.0.0.0/8") or cidrMatch(?dst.ip, "10.0.0.0/8")',
        "esql": ESQL + 'CIDR_MATCH(src.ip, "10.0.0.0/8") OR CIDR_MATCH(dst.ip, "10.0.0.0/8")',
        "opensearch": {
            "bool": {
                "should": [{"term": {"src.ip": "10.0.0.0/8"}}, {"term": {"dst.ip": "10.0.0.0/8"}}],
                "minimum_should_match": 1,
            }
        },
        "kusto": 'Net | where ipv4_is_in_range(SrcIp, "10.0.0.0/8") or ipv4_is_in_range(DstIp, "10.0.0.0/8")',
    },
    "[ipv4-addr:value ISSUBSET '2001:db8::/32']": {
        "kusto": 'Net | where ipv6_is_in_range(SrcIp, "2001:db8::/32") '
        'or ipv6_is_in_range(DstIp, "2001:db8::/32")',
    },
    "[ipv4-addr:value = '10.0.0.0/8']": {
        "kql": 'src.ip: "10.0.0.0/8" or dst.ip: "10.0.0.0/8"',
        "eql": 'any where cidrMatch(?src.ip, "10.0.0.0/8") or cidrMatch(?dst.ip, "10.0.0.0/8")',
    },
    "[ipv4-addr:value ISSUPERSET '10.1.2.3']": {
        "kql": 'src.ip: "10.1.2.3" or dst.ip: "10.1.2.3"',
        "lucene": 'src.ip:"10.1.2.3" OR dst.ip:"10.1.2.3"',
        "eql": 'any where ?src.ip == "10.1.2.3" or ?dst.ip == "10.1.2.3"',
        "esql": ESQL + 'src.ip == TO_IP("10.1.2.3") OR dst.ip == TO_IP("10.1.2.3")',
        "opensearch": {
            "bool": {
                "should": [{"term": {"src.ip": "10.1.2.3"}}, {"term": {"dst.ip": "10.1.2.3"}}],
                "minimum_should_match": 1,
            }
        },
        "kusto": 'Net | where SrcIp == "10.1.2.3" or DstIp == "10.1.2.3"',
    },
    "[ipv4-addr:value ISSUPERSET '10.0.0.0/8']": {
        "kql": Untranslatable("event fields hold single addresses"),
        "eql": Untranslatable("event fields hold single addresses"),
    },
    "[EXISTS file:name]": {
        "kql": "file.name: *",
        "lucene": "_exists_:file.name",
        "eql": "any where ?file.name != null",
        "esql": ESQL + "file.name IS NOT NULL",
        "opensearch": {"exists": {"field": "file.name"}},
        "kusto": "union isfuzzy=true File, Proc | where isnotempty(FileName)",
    },
    "[NOT EXISTS file:name]": {
        "kql": "not file.name: *",
        "lucene": "(*:* AND NOT _exists_:file.name)",
        "eql": "any where not (?file.name != null)",
        "esql": ESQL + "NOT (file.name IS NOT NULL)",
        "opensearch": {"bool": {"must_not": [{"exists": {"field": "file.name"}}]}},
        "kusto": "union isfuzzy=true File, Proc | where not(isnotempty(FileName))",
    },
    "[file:name = 'a' AND file:size > 10 OR domain-name:value = 'x']": {
        "kql": '(file.name: "a" and file.size > 10) or dns.name: "x"',
        "lucene": '(file.name:"a" AND file.size:{"10" TO *]) OR dns.name:"x"',
        "eql": 'any where (?file.name == "a" and ?file.size > 10) or ?dns.name == "x"',
        "esql": ESQL + '(file.name == "a" AND file.size > 10) OR dns.name == "x"',
        "opensearch": {
            "bool": {
                "should": [
                    {
                        "bool": {
                            "filter": [{"term": {"file.name": "a"}}, {"range": {"file.size": {"gt": 10}}}]
                        }
                    },
                    {"term": {"dns.name": "x"}},
                ],
                "minimum_should_match": 1,
            }
        },
        "kusto": "union isfuzzy=true File, Proc, Dns | where "
        '(FileName == "a" and Size > 10) or QueryName == "x"',
    },
    "[file:name = 'a' AND (file:size > 10 OR domain-name:value = 'x')]": {
        "kql": 'file.name: "a" and (file.size > 10 or dns.name: "x")',
        "lucene": 'file.name:"a" AND (file.size:{"10" TO *] OR dns.name:"x")',
        "eql": 'any where ?file.name == "a" and (?file.size > 10 or ?dns.name == "x")',
    },
    "[file:name != 'a' AND domain-name:value = 'x']": {
        "lucene": '_exists_:file.name AND dns.name:"x" AND NOT file.name:"a"',
        "opensearch": {
            "bool": {
                "filter": [{"exists": {"field": "file.name"}}, {"term": {"dns.name": "x"}}],
                "must_not": [{"term": {"file.name": "a"}}],
            }
        },
    },
    "[file:name = 'a'] OR [domain-name:value = 'x']": {
        "kql": 'file.name: "a" or dns.name: "x"',
        "lucene": 'file.name:"a" OR dns.name:"x"',
        "eql": 'any where ?file.name == "a" or ?dns.name == "x"',
        "esql": ESQL + 'file.name == "a" OR dns.name == "x"',
        "opensearch": {
            "bool": {
                "should": [{"term": {"file.name": "a"}}, {"term": {"dns.name": "x"}}],
                "minimum_should_match": 1,
            }
        },
        "kusto": 'union isfuzzy=true File, Proc, Dns | where FileName == "a" or QueryName == "x"',
    },
    "[file:name = 'a'] AND [domain-name:value = 'x']": dict.fromkeys(
        ("kql", "lucene", "eql", "esql", "opensearch", "kusto"), OBS_AND
    ),
    "([file:name = 'a'] FOLLOWEDBY [domain-name:value = 'x']) WITHIN 90 SECONDS": {
        "kql": Untranslatable("FOLLOWEDBY needs an ordered sequence"),
        "lucene": Untranslatable("FOLLOWEDBY needs an ordered sequence"),
        "eql": 'sequence with maxspan=90s [any where ?file.name == "a"] [any where ?dns.name == "x"]',
        "esql": Untranslatable("FOLLOWEDBY needs an ordered sequence"),
        "opensearch": Untranslatable("FOLLOWEDBY needs an ordered sequence"),
        "kusto": Untranslatable("FOLLOWEDBY needs an ordered sequence"),
    },
    "[file:name = 'a'] FOLLOWEDBY [domain-name:value = 'x'] FOLLOWEDBY [file:size > 1]": {
        "eql": 'sequence [any where ?file.name == "a"] [any where ?dns.name == "x"] '
        "[any where ?file.size > 1]",
    },
    "([file:name = 'a'] FOLLOWEDBY [domain-name:value = 'x']) WITHIN 1.5 SECONDS": {
        "eql": 'sequence with maxspan=1500ms [any where ?file.name == "a"] [any where ?dns.name == "x"]',
    },
    "([file:name = 'a'] OR [file:name = 'b']) FOLLOWEDBY [domain-name:value = 'x']": {
        "eql": 'sequence [any where ?file.name == "a" or ?file.name == "b"] [any where ?dns.name == "x"]',
    },
    "([file:name = 'a'] FOLLOWEDBY [domain-name:value = 'x']) OR [file:size > 1]": {
        "eql": Untranslatable("OR between event sequences"),
    },
    "[file:name = 'a'] REPEATS 2 TIMES": {
        "kql": Untranslatable("REPEATS needs several separate events"),
        "eql": 'sequence [any where ?file.name == "a"] [any where ?file.name == "a"]',
        "opensearch": Untranslatable("REPEATS needs several separate events"),
    },
    "([file:name = 'a'] FOLLOWEDBY [domain-name:value = 'x']) REPEATS 2 TIMES": {
        "eql": Untranslatable("REPEATS of a sequence"),
    },
    "[file:name = 'a'] START t'2024-01-01T00:00:00Z' STOP t'2024-02-01T00:00:00Z'": {
        "kql": 'file.name: "a" and @timestamp >= "2024-01-01T00:00:00Z" '
        'and @timestamp < "2024-02-01T00:00:00Z"',
        "lucene": 'file.name:"a" AND @timestamp:["2024-01-01T00:00:00Z" TO *] '
        'AND @timestamp:[* TO "2024-02-01T00:00:00Z"}',
        "eql": NO_EQL_DATES,
        "esql": ESQL + 'file.name == "a" AND @timestamp >= TO_DATETIME("2024-01-01T00:00:00Z") '
        'AND @timestamp < TO_DATETIME("2024-02-01T00:00:00Z")',
        "opensearch": {
            "bool": {
                "filter": [
                    {"term": {"file.name": "a"}},
                    {"range": {"@timestamp": {"gte": "2024-01-01T00:00:00Z"}}},
                    {"range": {"@timestamp": {"lt": "2024-02-01T00:00:00Z"}}},
                ]
            }
        },
        "kusto": 'union isfuzzy=true File, Proc | where FileName == "a" and Timestamp >= '
        "datetime(2024-01-01T00:00:00Z) and Timestamp < datetime(2024-02-01T00:00:00Z)",
    },
    "[file:name = 'a'] WITHIN 60 SECONDS": {
        "kql": 'file.name: "a"',
        "eql": 'any where ?file.name == "a"',
    },
    "[file:ctime > t'2020-01-01T00:00:00Z']": {
        "kql": 'file.created > "2020-01-01T00:00:00Z"',
        "lucene": 'file.created:{"2020-01-01T00:00:00Z" TO *]',
        "eql": NO_EQL_DATES,
        "esql": ESQL + 'file.created > TO_DATETIME("2020-01-01T00:00:00Z")',
        "opensearch": {"range": {"file.created": {"gt": "2020-01-01T00:00:00Z"}}},
        "kusto": "File | where Created > datetime(2020-01-01T00:00:00Z)",
    },
    "[ipv4-addr:value > '10.0.0.1']": {
        "esql": ESQL + 'src.ip > TO_IP("10.0.0.1") OR dst.ip > TO_IP("10.0.0.1")',
        "kusto": Untranslatable("Kusto stores IP addresses as strings"),
    },
    "[file:size = '12']": {
        "kql": "file.size: 12",
        "opensearch": {"term": {"file.size": 12}},
    },
    "[file:name = 12]": {
        "kql": 'file.name: "12"',
        "eql": 'any where ?file.name == "12"',
    },
    "[file:size = 'twelve']": {
        "kql": Untranslatable("cannot be compared with long field file.size"),
    },
    "[ipv4-addr:value = 'not-an-ip']": {
        "kql": Untranslatable("needs an IP address or CIDR for ip field src.ip"),
    },
    "[file:name = h'00ff']": {
        "kql": Untranslatable("binary/hex literals cannot be compared"),
    },
    "[file:name LIKE '%']": {
        "kql": "file.name: *",
        "opensearch": {"wildcard": {"file.name": {"value": "*"}}},
    },
    "[file:name MATCHES '(?i)evil']": {
        "lucene": Untranslatable("inline regex flags"),
        "kusto": Untranslatable("inline regex flags"),
    },
    "[x-unknown:value = 'a']": {
        "kql": Untranslatable("no golden field is mapped for x-unknown:value"),
    },
}

CASES = [
    (pattern, target, expected)
    for pattern, by_target in GOLDEN.items()
    for target, expected in by_target.items()
]


@pytest.mark.parametrize(("pattern", "target", "expected"), CASES, ids=[f"{t}:{p}" for p, t, _ in CASES])
def test_golden(pattern: str, target: str, expected: Any) -> None:
    field_map = KUSTO_MAP if target == "kusto" else GOLDEN_MAP
    if isinstance(expected, Untranslatable):
        with pytest.raises(Untranslatable, match=expected.reason.replace("(", r"\(").replace(")", r"\)")):
            translate(pattern, target=target, field_map=field_map)
    else:
        assert translate(pattern, target=target, field_map=field_map) == expected


def test_every_operator_has_goldens_in_every_language() -> None:
    operators = [
        "= ",
        "!=",
        " > ",
        ">=",
        " < ",
        "<=",
        " IN ",
        "LIKE",
        "MATCHES",
        "ISSUBSET",
        "ISSUPERSET",
        "EXISTS",
    ]
    for operator in operators:
        targets = {t for p, t, _ in CASES if operator in p}
        assert targets == {"kql", "lucene", "eql", "esql", "opensearch", "kusto"}, operator


def test_index_is_used_by_esql_and_kusto() -> None:
    pattern = "[domain-name:value = 'x']"
    esql = translate(pattern, target="esql", field_map=GOLDEN_MAP, index="logs-endpoint.*,filebeat-*")
    assert esql == 'FROM logs-endpoint.*,filebeat-* METADATA _id, _index, _version | WHERE dns.name == "x"'
    kusto = translate(pattern, target="kusto", field_map=KUSTO_MAP, index="DeviceEvents")
    assert kusto == 'DeviceEvents | where QueryName == "x"'


@pytest.mark.parametrize(("target", "index"), [("esql", "logs | DROP x"), ("kusto", "T | take 1")])
def test_index_injection_is_rejected(target: str, index: str) -> None:
    field_map = KUSTO_MAP if target == "kusto" else GOLDEN_MAP
    with pytest.raises(ValueError, match="invalid"):
        translate("[domain-name:value = 'x']", target=target, field_map=field_map, index=index)


def test_builtin_maps_smoke() -> None:
    sha256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"
    pattern = f"[file:hashes.'SHA-256' = '{sha256.upper()}']"
    assert translate(pattern, target="kql") == (
        f'file.hash.sha256: "{sha256}" or process.hash.sha256: "{sha256}" or dll.hash.sha256: "{sha256}" '
        f'or email.attachments.file.hash.sha256: "{sha256}"'
    )
    assert translate(pattern, target="opensearch") == {
        "bool": {
            "should": [
                {"term": {"syscheck.sha256_after": sha256}},
                {"term": {"data.osquery.columns.sha256": sha256}},
            ],
            "minimum_should_match": 1,
        }
    }
    assert translate(pattern, target="kusto") == (
        "union isfuzzy=true DeviceFileEvents, DeviceProcessEvents, DeviceImageLoadEvents, DeviceEvents, "
        f'EmailAttachmentInfo | where SHA256 == "{sha256}" or InitiatingProcessSHA256 == "{sha256}"'
    )
