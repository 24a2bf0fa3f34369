"""Shared benchmark plumbing: every `benchmarks/bench_*.py` exposes `run(scale: float) -> list[Figure]`.

`scale` is 1.0 for the documented figures and smaller for a smoke run; the runner prints one table.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    benchmark: str
    metric: str
    value: float
    unit: str
    target: str = ""
    peak_mib: float | None = None


def measure(work: Callable[[], Any], *, trace_memory: bool = False) -> tuple[float, float | None, Any]:
    """Run `work` once; return (seconds, peak MiB or None, result).

    Memory tracing slows Python code down several times, so throughput and memory are measured in
    separate runs by the benchmarks that report both.
    """
    if trace_memory:
        tracemalloc.start()
    start = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - start
    peak = None
    if trace_memory:
        peak = tracemalloc.get_traced_memory()[1] / (1024 * 1024)
        tracemalloc.stop()
    return elapsed, peak, result
