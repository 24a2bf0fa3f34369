"""OpenCTI indicators -> Kibana detection-engine rule bodies (`POST/PUT /api/detection_engine/rules`).

Two kinds of rules, so that a feed of a million IPs never becomes a million rules:

- Indicator-match (`threat_match`) rules, one per indicator kind (ip, domain, url, file hash, email),
  installed once: they join the source events with the threat-indicator documents the connector keeps in
  `settings.index_name`. An indicator whose pattern only ORs equality tests on values those rules cover is
  served by its documents and gets no rule of its own.
- One rule per other indicator: STIX patterns that are more than such values (AND, FOLLOWEDBY,
  comparisons, MATCHES, CIDR ranges, values no indicator-match rule covers) and every `kql`, `lucene`,
  `eql`, `esql` and `sigma` indicator. STIX is translated by `ctibridge.patterns` (every value escaped for
  the target language); native queries are checked by their parsers and deployed verbatim (never
  rewritten), so `ELASTIC_SECURITY_RULES_ENABLED` defaults to false: rules land disabled for review.

A pattern no target can express exactly yields no rule and a logged reason, never an approximate query.
Whether an indicator is alive (revoked, `valid_until`, `x_opencti_detection`) is the connector's call.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ctibridge.config.elastic import ElasticIntelSettings
from ctibridge.errors import ConfigurationError
from ctibridge.patterns import (
    Atom,
    PatternError,
    Untranslatable,
    atomic_values,
    is_atomic,
    parse_stix,
    translate,
)

log = logging.getLogger(__name__)

OPENCTI_TAG = "OpenCTI"
# Every rule this module builds carries MANAGED_TAG: `KibanaRules.managed_rule_ids` finds ours by it, so
# rules an analyst tagged "OpenCTI" by hand are never reconciled away.
MANAGED_TAG = "ctibridge-managed"
INDICATOR_MATCH_TAG = "Indicator Match"
RULE_ID_PREFIX = "opencti-"
INDICATOR_MATCH_PREFIX = "opencti-indicator-match-"
OCTI_EXTENSION = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba"
DOCUMENT_MODULE = "ti_custom"
DOCUMENT_DATASET = "ti_custom.indicator"
NATIVE_RULE_TYPES = {"kql": ("query", "kuery"), "lucene": ("query", "lucene"), "eql": ("eql", "eql")}
RULE_PATTERN_TYPES = frozenset({"stix", "kql", "lucene", "eql", "esql", "sigma"})
# STIX translation tries these in order: KQL is what analysts read in Kibana; Lucene adds regex (MATCHES);
# EQL adds sequences (FOLLOWEDBY, REPEATS); ES|QL is the last resort.
STIX_TARGETS: tuple[str, ...] = ("kql", "lucene", "eql", "esql")
# pySigma has no KQL backend.
SIGMA_TARGETS: tuple[str, ...] = ("lucene", "eql", "esql")
DEFAULT_SCORE = 50  # OpenCTI's default indicator score
MAX_NAME = 256
MAX_PATTERN_IN_TEXT = 4000
_STIX_ID = re.compile(
    r"[a-z][a-z0-9-]*--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_DURATION = re.compile(r"([1-9][0-9]*)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_COVERED_HASHES = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


def rule_id_for(stix_id: str) -> str:
    """`opencti-<stix id>`: stable across reruns and machines, and readable back with `stix_id_for`."""
    if not isinstance(stix_id, str) or not _STIX_ID.fullmatch(stix_id.strip()):
        raise ValueError(f"not a STIX id: {stix_id!r}")
    return RULE_ID_PREFIX + stix_id.strip().lower()


def stix_id_for(rule_id: str) -> str | None:
    """The STIX id a per-indicator rule was made from; None for indicator-match and foreign rules."""
    if not rule_id.startswith(RULE_ID_PREFIX):
        return None
    candidate = rule_id[len(RULE_ID_PREFIX) :]
    return candidate if _STIX_ID.fullmatch(candidate) else None


def severity_for(score: int | None) -> tuple[str, int]:
    """(severity, risk_score) from an OpenCTI score 0-100: the risk score is the score itself, the
    severity its band in Kibana's schema (0-21 low, 22-47 medium, 48-73 high, 74-100 critical).
    No score means OpenCTI's default, 50."""
    risk = DEFAULT_SCORE if score is None else max(0, min(100, int(score)))
    if risk <= 21:
        return "low", risk
    if risk <= 47:
        return "medium", risk
    if risk <= 73:
        return "high", risk
    return "critical", risk


def opencti_attribute(obj: Mapping[str, Any], key: str) -> Any:
    """An `x_opencti_*` value from the root or, as the live stream sends it, the OpenCTI extension."""
    value = obj.get(f"x_opencti_{key}")
    if value is None:
        extension = (obj.get("extensions") or {}).get(OCTI_EXTENSION) or {}
        value = extension.get(key) if isinstance(extension, Mapping) else None
    return value


def is_covered_atom(atom: Atom) -> bool:
    """True when an indicator-match rule and the indicator documents match this value exactly."""
    if not isinstance(atom.value, str) or not atom.value:
        return False
    if atom.type in ("ipv4-addr", "ipv6-addr") and atom.path == "value":
        try:
            network = ipaddress.ip_network(atom.value.strip(), strict=False)
        except ValueError:
            return False
        # a range: documents hold addresses (ECS `ip`), so a rule tests the range; /32 and /128 are addresses
        return network.num_addresses == 1
    # OpenCTI's `hostname` observables are documented as domain names (ECS has no hostname indicator type)
    if atom.type in ("domain-name", "hostname", "url", "email-addr") and atom.path == "value":
        return True
    if atom.type == "file" and atom.path.startswith("hashes."):
        return atom.path[len("hashes.") :].replace("-", "").upper() in _COVERED_HASHES
    return False


def is_rule_worthy(indicator: Mapping[str, Any]) -> bool:
    """Does this indicator need a rule of its own (rather than documents + indicator-match rules)?

    True for every kql, lucene, eql, esql and sigma indicator, and for a STIX pattern unless it only ORs
    equality tests on covered values. An invalid STIX pattern or another pattern type is not rule-worthy.
    """
    return _classify(indicator)[0] == "rule"


def _classify(indicator: Mapping[str, Any]) -> tuple[str, str]:
    """("rule" | "covered" | "skip", reason)."""
    if indicator.get("type") != "indicator":
        return "skip", f"not an indicator ({indicator.get('type')!r})"
    pattern = indicator.get("pattern")
    pattern_type = str(indicator.get("pattern_type") or "").strip().lower()
    if not isinstance(pattern, str) or not pattern.strip():
        return "skip", "no pattern"
    if pattern_type not in RULE_PATTERN_TYPES:
        return "skip", f"pattern type {pattern_type or 'none'!r} has no Elastic rule form"
    if pattern_type != "stix":
        return "rule", f"{pattern_type} indicator"
    try:
        parsed = parse_stix(pattern)
    except PatternError as exc:
        return "skip", f"invalid STIX pattern: {exc.reason}"
    if is_atomic(parsed):
        uncovered = [atom for atom in atomic_values(parsed) if not is_covered_atom(atom)]
        if not uncovered:
            return "covered", "atomic values matched by the indicator-match rules"
        first = uncovered[0]
        return "rule", f"{first.type}:{first.path} values are not covered by an indicator-match rule"
    return "rule", "pattern is more than atomic values"


def parse_interval(value: str, setting: str) -> int:
    """Seconds in a Kibana schedule interval (`30s`, `5m`, `1h`, `1d`)."""
    match = _DURATION.fullmatch(str(value).strip())
    if match is None:
        raise ConfigurationError({setting: "expected a number and a unit s, m, h or d, e.g. 5m"})
    return int(match.group(1)) * _SECONDS[match.group(2)]


@dataclass(frozen=True)
class RuleDecision:
    """What `RuleBuilder.decide` made of one indicator: a body, or why there is none."""

    body: dict[str, Any] | None
    outcome: str  # "rule", "covered", "skip" or "untranslatable"
    reason: str


@dataclass(frozen=True)
class IndicatorKind:
    """One indicator-match rule: event fields mapped (OR) onto one threat.indicator field each."""

    key: str
    title: str
    indicator_types: tuple[str, ...]
    mappings: tuple[tuple[str, str], ...]  # (source event field, threat indicator field)


# ECS fields only. There is no `threat.indicator.domain` in ECS: domain-name indicators carry their value
# in `threat.indicator.url.domain`, and the `threat.indicator.type` filter keeps URL indicators' domains
# from matching as domains. Both URL event fields match the indicator's `url.full`, the field Elastic's own
# indicator-match rules require.
INDICATOR_KINDS: tuple[IndicatorKind, ...] = (
    IndicatorKind(
        "ip",
        "IP address",
        ("ipv4-addr", "ipv6-addr"),
        (("source.ip", "threat.indicator.ip"), ("destination.ip", "threat.indicator.ip")),
    ),
    IndicatorKind(
        "domain",
        "domain name",
        ("domain-name",),
        tuple(
            (field, "threat.indicator.url.domain")
            for field in ("dns.question.name", "url.domain", "destination.domain", "tls.client.server_name")
        ),
    ),
    IndicatorKind(
        "url",
        "URL",
        ("url",),
        (("url.full", "threat.indicator.url.full"), ("url.original", "threat.indicator.url.full")),
    ),
    IndicatorKind(
        "file-hash",
        "file hash",
        ("file",),
        tuple(
            (f"{owner}.hash.{algorithm}", f"threat.indicator.file.hash.{algorithm}")
            for algorithm in _COVERED_HASHES.values()
            for owner in ("file", "process", "dll")
        ),
    ),
    IndicatorKind(
        "email",
        "email address",
        ("email-addr",),
        tuple(
            (f"email.{role}.address", "threat.indicator.email.address")
            for role in ("from", "sender", "reply_to", "to")
        ),
    ),
)


class RuleBuilder:
    """Builds Kibana rule-create bodies from indicators; pure (no I/O), so it also runs offline.

    `stix_targets` / `sigma_targets` override the order in which query languages are tried.
    """

    def __init__(
        self,
        settings: ElasticIntelSettings,
        opencti_url: str | None,
        *,
        stix_targets: Sequence[str] = STIX_TARGETS,
        sigma_targets: Sequence[str] = SIGMA_TARGETS,
    ) -> None:
        self.settings = settings
        self.opencti_url = opencti_url.rstrip("/") if opencti_url else None
        self.stix_targets = tuple(stix_targets)
        self.sigma_targets = tuple(sigma_targets)
        interval = parse_interval(settings.rule_interval, "ELASTIC_SECURITY_RULE_INTERVAL")
        lookback = parse_interval(settings.rule_lookback, "ELASTIC_SECURITY_RULE_LOOKBACK")
        self.interval = settings.rule_interval.strip()
        self.from_ = f"now-{interval + lookback}s"
        self.index = [pattern for pattern in settings.rule_index_patterns if pattern]
        if not self.index:
            raise ConfigurationError({"ELASTIC_SECURITY_RULE_INDEX_PATTERNS": "at least one index pattern"})
        self.esql_index = ",".join(self.index)

    # ------------------------------------------------------------------ per-indicator rules

    def rule_for(self, indicator: dict[str, Any]) -> dict[str, Any] | None:
        """The rule-create body for a rule-worthy indicator; None (with a logged reason) otherwise."""
        decision = self.decide(indicator)
        if decision.outcome == "untranslatable":
            log.warning("no rule for %s: %s", indicator.get("id"), decision.reason)
        elif decision.outcome == "skip" and indicator.get("type") == "indicator":
            log.info("no rule for %s: %s", indicator.get("id"), decision.reason)
        elif decision.outcome == "covered":
            log.debug("no rule for %s: %s", indicator.get("id"), decision.reason)
        return decision.body

    def decide(self, indicator: Mapping[str, Any]) -> RuleDecision:
        outcome, reason = _classify(indicator)
        if outcome != "rule":
            return RuleDecision(None, outcome, reason)
        try:
            stix_id = str(indicator.get("id") or "")
            rule_id = rule_id_for(stix_id)
        except ValueError as exc:
            return RuleDecision(None, "skip", str(exc))
        pattern_type = str(indicator["pattern_type"]).strip().lower()
        pattern = str(indicator["pattern"])
        try:
            query_part = self._query(pattern_type, pattern)
        except PatternError as exc:
            return RuleDecision(None, "untranslatable", f"{pattern_type} pattern: {exc.reason}")
        body = self._common(indicator, rule_id, stix_id, pattern_type, pattern)
        body.update(query_part)
        if body["type"] != "esql":
            body["index"] = list(self.index)
        return RuleDecision(body, "rule", reason)

    def _query(self, pattern_type: str, pattern: str) -> dict[str, Any]:
        """type/language/query for the pattern; raises PatternError (Untranslatable) when none fits."""
        if pattern_type in ("kql", "lucene", "eql", "esql"):
            query = translate(pattern, source=pattern_type, target=pattern_type)  # checked, unchanged
            return _typed(pattern_type, str(query))
        source = "stix" if pattern_type == "stix" else "sigma"
        targets = self.stix_targets if source == "stix" else self.sigma_targets
        reasons: list[str] = []
        for target in targets:
            try:
                query = translate(pattern, source=source, target=target, index=self.esql_index)
            except Untranslatable as exc:
                reasons.append(f"{target}: {exc.reason}")
                continue
            except ValueError as exc:  # e.g. index patterns ES|QL cannot name
                reasons.append(f"{target}: {exc}")
                continue
            return _typed(target, str(query))
        raise Untranslatable("; ".join(reasons) or "no target language configured")

    def _common(
        self, indicator: Mapping[str, Any], rule_id: str, stix_id: str, pattern_type: str, pattern: str
    ) -> dict[str, Any]:
        score = opencti_attribute(indicator, "score")
        try:
            score = int(score) if score is not None else None
        except (TypeError, ValueError):
            score = None
        severity, risk = severity_for(score)
        title = str(indicator.get("name") or "").strip() or _shorten(pattern, 120)
        shown_pattern = (
            pattern if len(pattern) <= MAX_PATTERN_IN_TEXT else pattern[:MAX_PATTERN_IN_TEXT] + "…"
        )
        description = str(indicator.get("description") or "").strip()
        summary = (
            f"OpenCTI indicator ({pattern_type} pattern, score {score if score is not None else 'none'})."
        )
        body: dict[str, Any] = {
            "rule_id": rule_id,
            "name": _shorten(f"OpenCTI: {title}", MAX_NAME),
            "description": f"{description}\n\n{summary}" if description else summary,
            "risk_score": risk,
            "severity": severity,
            "tags": self._tags(indicator.get("labels")),
            "references": self._references(indicator, stix_id),
            "enabled": bool(self.settings.rules_enabled),
            "interval": self.interval,
            "from": self.from_,
            "author": ["OpenCTI"],
            "note": f"Source pattern ({pattern_type}):\n\n```\n{shown_pattern.replace('```', '` ` `')}\n```",
            "meta": {"managed_by": "ctibridge", "stix_id": stix_id, "pattern_type": pattern_type},
        }
        return body

    def _tags(self, labels: Any) -> list[str]:
        tags: list[str] = []
        for label in (labels if isinstance(labels, list) else []) + [OPENCTI_TAG, MANAGED_TAG]:
            text = str(label).strip() if label is not None else ""
            if text and text not in tags:
                tags.append(text)
        return tags

    def _references(self, indicator: Mapping[str, Any], stix_id: str) -> list[str]:
        """The indicator in OpenCTI (its internal id when the stream gives it, else the STIX id)."""
        if not self.opencti_url:
            return []
        internal = opencti_attribute(indicator, "id")
        target = str(internal) if internal else stix_id
        return [f"{self.opencti_url}/dashboard/observations/indicators/{target}"]

    # ------------------------------------------------------------------ indicator-match rules

    def indicator_match_rules(self) -> list[dict[str, Any]]:
        """One `threat_match` rule per indicator kind, over the documents in `settings.index_name`."""
        return [self._indicator_match(kind) for kind in INDICATOR_KINDS]

    def _indicator_match(self, kind: IndicatorKind) -> dict[str, Any]:
        event_fields = list(dict.fromkeys(field for field, _ in kind.mappings))
        indicator_fields = list(dict.fromkeys(value for _, value in kind.mappings))
        types = " or ".join(f'"{t}"' for t in kind.indicator_types)
        present = " or ".join(f"{field}:*" for field in indicator_fields)
        severity, risk = "high", 73
        return {
            "rule_id": f"{INDICATOR_MATCH_PREFIX}{kind.key}",
            "type": "threat_match",
            "name": f"OpenCTI indicator match: {kind.title}",
            "description": (
                f"Alerts when an event holds the value of an OpenCTI {kind.title} indicator kept in "
                f"{self.settings.index_name}. Installed and kept by the ctibridge Elastic Security Intel "
                "connector; edits are overwritten at its next start."
            ),
            "risk_score": risk,
            "severity": severity,
            "tags": [OPENCTI_TAG, MANAGED_TAG, INDICATOR_MATCH_TAG],
            "author": ["OpenCTI"],
            "enabled": bool(self.settings.rules_enabled),
            "interval": self.interval,
            "from": self.from_,
            "index": list(self.index),
            "language": "kuery",
            # Our own indicator documents may live under the same patterns (logs-*): never match them.
            "query": f"({' or '.join(f'{field}:*' for field in event_fields)}) and not event.kind:enrichment",
            "threat_index": [self.settings.index_name],
            "threat_language": "kuery",
            "threat_query": (
                f'event.module:"{DOCUMENT_MODULE}" and event.dataset:"{DOCUMENT_DATASET}" and '
                f"threat.indicator.type:({types}) and ({present}) and not opencti.matches_alone:false"
            ),
            "threat_mapping": [
                {"entries": [{"field": field, "type": "mapping", "value": value}]}
                for field, value in kind.mappings
            ],
            "threat_indicator_path": "threat.indicator",
            "meta": {"managed_by": "ctibridge", "indicator_kind": kind.key},
        }


def _typed(language: str, query: str) -> dict[str, Any]:
    if language == "esql":
        return {"type": "esql", "language": "esql", "query": query}
    rule_type, kibana_language = NATIVE_RULE_TYPES[language]
    return {"type": rule_type, "language": kibana_language, "query": query}


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split()) if len(text) <= limit * 4 else " ".join(text[: limit * 4].split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
