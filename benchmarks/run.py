"""Run every benchmark and print one table with the machine and library versions.

Usage: python benchmarks/run.py [--scale 0.1] [--only NAME]
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import Figure, reference_loop_us  # noqa: E402

VERSIONED = [
    "ctibridge",
    "pycti",
    "stix2",
    "stix2-patterns",
    "elasticsearch",
    "opensearch-py",
    "pysigma",
    "msal",
]


def _versions() -> str:
    parts = []
    for name in VERSIONED:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the documented sizes")
    parser.add_argument("--only", help="run only benchmarks whose module name contains this")
    args = parser.parse_args(argv)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cpu, {platform.system()} {platform.release()}")
    print(f"python {platform.python_version()}; {_versions()}")
    print(f"reference: {reference_loop_us():.1f} us per sum(range(1000)), best of 5 (to compare machines)")
    figures: list[Figure] = []
    for path in sorted(HERE.glob("bench_*.py")):
        if args.only and args.only not in path.stem:
            continue
        module = importlib.import_module(path.stem)
        figures.extend(module.run(args.scale))

    header = (
        f"{'benchmark':<28} {'metric':<38} {'value (wall)':>13} {'per CPU-s':>11} {'unit':<11} "
        f"{'peak MiB':>9} {'ref us':>6}  target"
    )
    print(header)
    print("-" * len(header))
    for fig in figures:
        peak = f"{fig.peak_mib:.1f}" if fig.peak_mib is not None else "-"
        cpu = f"{fig.cpu_value:,.1f}" if fig.cpu_value is not None else "-"
        reference = f"{fig.reference_us:.1f}" if fig.reference_us is not None else "-"
        print(
            f"{fig.benchmark:<28} {fig.metric:<38} {fig.value:>13,.1f} {cpu:>11} {fig.unit:<11} "
            f"{peak:>9} {reference:>6}  {fig.target}"
        )
    print(
        "value (wall): per wall-clock second; per CPU-s: per second of this process's CPU time, i.e. the "
        "rate on one\nunloaded core (the machine is shared, so wall-clock rates drop under others' load).\n"
        "ref us: the reference loop just before the run a figure comes from; a higher value means a slower "
        "machine\nstate and a lower rate."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
