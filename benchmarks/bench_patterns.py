"""Pattern translation throughput: STIX text -> AST (OASIS grammar and validation), AST -> each language.

The corpus is generated deterministically and mixes what OpenCTI indicators look like: mostly single IOC
equalities, then IN lists, hash-or-name observations, LIKE, CIDR, negations, MATCHES, qualifiers and
FOLLOWEDBY. Parsing dominates, so it is reported on its own, next to translation from a parsed AST and
end-to-end (parse + translate, caches cleared) per language. Patterns a language rejects (Untranslatable)
count as processed: deciding that is part of the work, and the split is shown in the metric name.
"""

from __future__ import annotations

import random
import string
import sys
from contextlib import suppress
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ctibridge.patterns import TARGETS, Pattern, Untranslatable, parse_stix, renderer_for
from ctibridge.patterns.lowering import lower
from ctibridge.patterns.stix import _parse_cached
from harness import Figure, measure, rate

BENCHMARK = "patterns"
TARGET = ">= 5,000/s"
REGISTRY_PREFIX = "HKEY_LOCAL_MACHINE\\Software\\"
HOSTILE = "\\'\"*?:() %_<>/"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _hex(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(length))


def _ip(rng: random.Random) -> str:
    return ".".join(str(rng.randrange(1, 255)) for _ in range(4))


def _word(rng: random.Random, hostile: bool = False) -> str:
    alphabet = string.ascii_lowercase + string.digits + (HOSTILE if hostile else "")
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(4, 14)))


def _domain(rng: random.Random) -> str:
    return f"{_word(rng)}.{rng.choice(['com', 'net', 'org', 'io'])}"


def _pattern(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.20:
        return f"[ipv4-addr:value = {_quote(_ip(rng))}]"
    if kind < 0.35:
        return f"[domain-name:value = {_quote(_domain(rng))}]"
    if kind < 0.45:
        return f"[url:value = {_quote('https://' + _domain(rng) + '/' + _word(rng, hostile=True))}]"
    if kind < 0.55:
        return f"[file:hashes.'SHA-256' = '{_hex(rng, 64)}']"
    if kind < 0.60:
        name = _quote(_word(rng, hostile=True) + ".exe")
        return f"[file:hashes.MD5 = '{_hex(rng, 32)}' OR file:name = {name}]"
    if kind < 0.66:
        values = ", ".join(_quote(_domain(rng)) for _ in range(rng.randrange(2, 6)))
        return f"[domain-name:value IN ({values})]"
    if kind < 0.71:
        return f"[ipv4-addr:value ISSUBSET '{_ip(rng).rsplit('.', 1)[0]}.0/24']"
    if kind < 0.76:
        return f"[file:name LIKE {_quote('%' + _word(rng) + '%.dll')}]"
    if kind < 0.80:
        return (
            f"[network-traffic:dst_ref.value = {_quote(_ip(rng))} AND network-traffic:dst_port = "
            f"{rng.randrange(1, 65535)} AND network-traffic:protocols[*] != 'udp']"
        )
    if kind < 0.84:
        return f"[email-addr:value = {_quote(_word(rng) + '@' + _domain(rng))}] OR [url:value LIKE 'http://%.ru/%']"
    if kind < 0.88:
        regex = _quote("(?:-enc|-e) [A-Za-z0-9+/=]{" + str(rng.randrange(20, 80)) + ",}")
        return f"[process:command_line MATCHES {regex}]"
    if kind < 0.91:
        key = _quote(REGISTRY_PREFIX + _word(rng))
        return f"[windows-registry-key:key = {key}]"
    if kind < 0.95:
        return f"[user-account:account_login = {_quote(_word(rng))} AND NOT EXISTS user-account:display_name]"
    if kind < 0.98:
        return (
            f"[domain-name:value = {_quote(_domain(rng))}] START t'2024-01-01T00:00:00Z' "
            "STOP t'2025-01-01T00:00:00Z'"
        )
    first, second = _quote(_word(rng)), _quote(_ip(rng))
    return f"([process:name = {first}] FOLLOWEDBY [ipv4-addr:value = {second}]) WITHIN 300 SECONDS"


def corpus(count: int, seed: int = 20240601) -> list[str]:
    rng = random.Random(seed)
    return [_pattern(rng) for _ in range(count)]


def _translate_all(target: str, asts: list[Pattern]) -> tuple[int, int]:
    renderer = renderer_for(target)
    translated = rejected = 0
    for ast in asts:
        try:
            renderer.render(ast)
            translated += 1
        except Untranslatable:
            rejected += 1
    return translated, rejected


def _end_to_end(target: str, texts: list[str]) -> None:
    renderer = renderer_for(target)
    for text in texts:
        with suppress(Untranslatable):
            renderer.render(parse_stix(text))


def _clear_caches() -> None:
    _parse_cached.cache_clear()
    lower.cache_clear()


def run(scale: float) -> list[Figure]:
    count = max(1, int(10_000 * scale))
    texts = corpus(count)
    figures: list[Figure] = []

    _clear_caches()
    timing = measure(lambda: [parse_stix(text) for text in texts])
    asts = timing.result
    figures.append(rate(BENCHMARK, "parse+validate STIX (OASIS grammar)", count, timing, "patterns/s"))

    for target in TARGETS:
        renderer_for(target)  # built once per configuration in real use too
        lower.cache_clear()
        timing = measure(partial(_translate_all, target, asts))
        translated, rejected = timing.result
        metric = f"AST->{target} ({translated} ok/{rejected} rej)"
        figures.append(rate(BENCHMARK, metric, count, timing, "patterns/s", target=TARGET))

    for target in TARGETS:
        _clear_caches()
        timing = measure(partial(_end_to_end, target, texts))
        metric = f"text->{target} (parse+translate)"
        figures.append(rate(BENCHMARK, metric, count, timing, "patterns/s", target=TARGET))

    _clear_caches()
    _, peak, _ = measure(lambda: [parse_stix(text) for text in texts], trace_memory=True)
    figures.append(Figure(BENCHMARK, "parsed corpus held in memory", count, "patterns", peak_mib=peak))
    _clear_caches()
    return figures


if __name__ == "__main__":
    for figure in run(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0):
        print(f"{figure.metric:<44} {figure.value:>12,.1f} {figure.unit:<11} {figure.target}")
