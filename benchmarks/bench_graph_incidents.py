"""`convert graph-incidents` throughput and peak memory: Graph incidents with 5 alerts and 10 evidence each.

Each incident becomes a Case-Incident with 5 Incidents and their observables (about 150 STIX objects);
evidence rotates through all 18 fixture types, three of which are skipped by design.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from harness import Figure, measure, rate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.graph_incidents import generate_incidents

from ctibridge.convert import CONVERTERS, run_conversion
from ctibridge.siem.microsoft import convert as _register  # noqa: F401
from ctibridge.stix import StixBuilder, Tlp


def _write(path: Path, count: int) -> None:
    with path.open("w") as handle:
        for start in range(0, count, 500):
            batch = generate_incidents(
                min(500, count - start), seed=start, alerts_per_incident=5, evidence_per_alert=10,
                first_id=1000 + start,
            )  # fmt: skip
            for incident in batch:
                handle.write(json.dumps(incident) + "\n")


def _convert(source: Path) -> tuple[int, int]:
    builder = StixBuilder(author_name="Microsoft Security", tlp=Tlp.AMBER)
    with open(os.devnull, "w") as sink:
        stats = run_conversion(CONVERTERS["graph-incidents"], str(source), sink, builder)
    return stats.records, sum(stats.written.values())


def run(scale: float) -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (max(int(1_000 * scale), 50), max(int(5_000 * scale), 200)):
            source = Path(tmp) / f"incidents-{count}.ndjson"
            _write(source, count)
            timing = measure(lambda source=source: _convert(source))
            records, objects = timing.result
            assert records == count and objects > count * 50
            _, peak, _ = measure(lambda source=source: _convert(source), trace_memory=True)
            figures.append(
                rate(
                    "convert graph-incidents",
                    f"{count:,} incidents x5 alerts x10 evidence",
                    count,
                    timing,
                    "incidents/s",
                    "reported (no target in issue 6); flat memory",
                    peak,
                )
            )
    return figures
