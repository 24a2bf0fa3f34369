"""Offline pipeline: normalised alerts (NDJSON) -> STIX bundle, at two sizes to show memory stays flat."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ctibridge.convert import CONVERTERS, run_conversion
from ctibridge.stix import StixBuilder, Tlp
from harness import Figure, measure, rate


def _alert(i: int) -> dict:
    host = f"ws-{i % 500:04d}"
    return {
        "source": "Benchmark SIEM",
        "id": f"alert-{i:08d}",
        "name": f"Rule {i % 40} on {host} ({i:08d})",
        "created": f"2025-03-04T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000Z",
        "description": "generated",
        "severity": ["low", "medium", "high", "critical"][i % 4],
        "tags": ["bench", f"rule-{i % 40}"],
        "hosts": [{"name": host, "ips": [f"10.{i % 200}.{(i // 200) % 250}.{i % 250 + 1}"]}],
        "users": [{"login": f"user{i % 300}", "domain": "CORP"}],
        "observables": [
            {"type": "ipv4-addr", "value": f"198.51.{i % 250}.{(i * 7) % 250 + 1}"},
            {"type": "domain-name", "value": f"host{i % 1000}.example-{i % 7}.net"},
            {"type": "file", "name": f"tool{i % 90}.exe", "hashes": {"sha256": f"{i:064x}"}},
            {
                "type": "process",
                "pid": 1000 + i % 5000,
                "command_line": f"tool{i % 90}.exe --run {i}",
                "parent": {"pid": 4, "command_line": "services.exe"},
            },
        ],
        "techniques": [{"id": f"T1{(i % 50) + 10:03d}", "name": f"Technique {i % 50}"}],
    }


def _write_input(path: Path, count: int) -> None:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps(_alert(i)) + "\n")


def _convert(source: Path) -> int:
    builder = StixBuilder(author_name="bench", tlp=Tlp.AMBER)
    with open(os.devnull, "w") as sink:
        stats = run_conversion(CONVERTERS["alerts"], str(source), sink, builder)
    return stats.records


def run(scale: float) -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(20_000 * scale) or 100, int(100_000 * scale) or 500):
            source = Path(tmp) / f"alerts-{count}.ndjson"
            _write_input(source, count)
            timing = measure(lambda source=source: _convert(source))
            assert timing.result == count
            _, peak, _ = measure(lambda source=source: _convert(source), trace_memory=True)
            figures.append(
                rate(
                    "convert alerts (normalised)",
                    f"alerts/s, {count:,} alerts",
                    count,
                    timing,
                    "alerts/s",
                    ">= 5,000/s; flat memory",
                    peak,
                )
            )
    return figures
