"""`convert elastic-alerts` throughput and peak memory: 100,000 Kibana alerts -> STIX (target >= 5,000/s).

Throughput is the best of three runs; peak memory comes from a separate traced run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from harness import Figure, best_of, measure, rate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.elastic_alerts import generate_alerts

from ctibridge.convert import CONVERTERS, run_conversion
from ctibridge.siem.elastic import convert as _register  # noqa: F401
from ctibridge.stix import StixBuilder, Tlp


def _write(path: Path, count: int) -> None:
    with path.open("w") as handle:
        for doc in generate_alerts(count, seed=1):
            handle.write(json.dumps(doc) + "\n")


def _convert(source: Path) -> int:
    builder = StixBuilder(author_name="Elastic Security", tlp=Tlp.AMBER)
    with open(os.devnull, "w") as sink:
        return run_conversion(CONVERTERS["elastic-alerts"], str(source), sink, builder).records


def run(scale: float) -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (max(int(20_000 * scale), 200), max(int(100_000 * scale), 1000)):
            source = Path(tmp) / f"alerts-{count}.ndjson"
            _write(source, count)
            timing = best_of(3, lambda source=source: _convert(source))
            assert timing.result == count
            _, peak, _ = measure(lambda source=source: _convert(source), trace_memory=True)
            figures.append(
                rate(
                    "convert elastic-alerts",
                    f"{count:,} alerts",
                    count,
                    timing,
                    "alerts/s",
                    ">= 5,000/s; flat memory",
                    peak,
                )
            )
    return figures
