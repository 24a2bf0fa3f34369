"""Shared benchmark plumbing: every `benchmarks/bench_*.py` exposes `run(scale: float) -> list[Figure]`.

`scale` is 1.0 for the documented figures and smaller for a smoke run; the runner prints one table.

Throughput is reported twice: per wall-clock second and per second of this process's CPU time. The machine is
shared, so wall-clock rates drop when others load it; the CPU-time rate is what "per second on one core"
means and stays comparable between runs (the benchmarks are single-threaded).
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
    cpu_value: float | None = None  # the same rate per CPU-second of this process, for throughput figures


class Measurement(tuple):
    """(seconds, peak MiB or None, result), unpackable as before, plus `cpu_seconds` of this process."""

    cpu_seconds: float

    def __new__(cls, seconds: float, peak: float | None, result: Any, cpu_seconds: float) -> Measurement:
        self = super().__new__(cls, (seconds, peak, result))
        self.cpu_seconds = cpu_seconds
        return self

    @property
    def seconds(self) -> float:
        return self[0]

    @property
    def peak_mib(self) -> float | None:
        return self[1]

    @property
    def result(self) -> Any:
        return self[2]


def measure(work: Callable[[], Any], *, trace_memory: bool = False) -> Measurement:
    """Run `work` once; return (seconds, peak MiB or None, result) with `.cpu_seconds`.

    Memory tracing slows Python code down several times, so throughput and memory are measured in
    separate runs by the benchmarks that report both.
    """
    if trace_memory:
        tracemalloc.start()
    start = time.perf_counter()
    cpu_start = time.process_time()
    result = work()
    cpu = time.process_time() - cpu_start
    elapsed = time.perf_counter() - start
    peak = None
    if trace_memory:
        peak = tracemalloc.get_traced_memory()[1] / (1024 * 1024)
        tracemalloc.stop()
    return Measurement(elapsed, peak, result, cpu)


def best_of(runs: int, work: Callable[[], Any]) -> Measurement:
    """The run with the least CPU time of `runs`: on a shared machine the others only add others' noise
    (cache and memory contention), as `timeit` reasons."""
    timings = [measure(work) for _ in range(max(runs, 1))]
    return min(timings, key=lambda timing: timing.cpu_seconds)


def rate(
    benchmark: str,
    metric: str,
    count: float,
    timing: Measurement,
    unit: str,
    target: str = "",
    peak_mib: float | None = None,
) -> Figure:
    """A throughput figure: `count` items per wall-clock second and per CPU-second of `timing`."""
    cpu = count / timing.cpu_seconds if timing.cpu_seconds > 0 else None
    return Figure(benchmark, metric, count / timing.seconds, unit, target, peak_mib, cpu)
