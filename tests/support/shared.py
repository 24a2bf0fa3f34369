"""Where the project's shared/ folder (vendor specs, fact sheets) is: beside the clone, as CI lays it out."""

from __future__ import annotations

from pathlib import Path

_ROOTS = (Path(__file__).resolve().parents[3] / "shared", Path("/work/shared"))


def shared_file(relative: str) -> Path:
    """The first existing copy of shared/`relative`; the sibling path when none exists (tests then skip)."""
    for root in _ROOTS:
        candidate = root / relative
        if candidate.exists():
            return candidate
    return _ROOTS[0] / relative
