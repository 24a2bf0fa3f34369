"""Shared benchmark plumbing: every `benchmarks/bench_*.py` exposes `run(scale: float) -> list[Figure]`.

`scale` is 1.0 for the documented figures and smaller for a smoke run; the runner prints one table.

Throughput is reported twice: per wall-clock second and per second of this process's CPU time. The machine is
shared, so wall-clock rates drop when others load it; the CPU-time rate is what "per second on one core"
means and stays comparable between runs (the benchmarks are single-threaded).
"""

from __future__ import annotations

import time
import timeit
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
    reference_us: float | None = None  # the reference loop timed just before the run the figure comes from


class Measurement(tuple):
    """(seconds, peak MiB or None, result), unpackable as before, plus `cpu_seconds` of this process and
    the reference loop timed just before the run (none for a memory-traced run)."""

    cpu_seconds: float
    reference_us: float | None

    def __new__(
        cls,
        seconds: float,
        peak: float | None,
        result: Any,
        cpu_seconds: float,
        reference_us: float | None = None,
    ) -> Measurement:
        self = super().__new__(cls, (seconds, peak, result))
        self.cpu_seconds = cpu_seconds
        self.reference_us = reference_us
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


def reference_loop_us(repeat: int = 5) -> float:
    """A fixed interpreter workload, timed before every measured run. This machine's speed moves between
    states (the same code and input ran 1.4 times slower for minutes at a time) and the loop moves with
    it: a figure is comparable only with figures taken at a similar reference, on the same interpreter."""
    runs = timeit.repeat("sum(range(1000))", number=2000, repeat=repeat)
    return min(runs) / 2000 * 1e6


def measure(work: Callable[[], Any], *, trace_memory: bool = False) -> Measurement:
    """Run `work` once; return (seconds, peak MiB or None, result) with `.cpu_seconds`.

    Memory tracing slows Python code down several times, so throughput and memory are measured in
    separate runs by the benchmarks that report both.
    """
    # The machine's state just before the run; a traced run's speed means nothing, so it has none.
    reference = None if trace_memory else reference_loop_us(repeat=3)
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
    return Measurement(elapsed, peak, result, cpu, reference)


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
    reference = timing.reference_us
    return Figure(benchmark, metric, count / timing.seconds, unit, target, peak_mib, cpu, reference)
