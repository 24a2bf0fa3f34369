"""Pattern errors: callers must tell a broken indicator from one a SIEM language cannot express."""

from __future__ import annotations

from ctibridge.errors import CtiBridgeError


class PatternError(CtiBridgeError):
    """The pattern is invalid; `reason` says why in words an analyst can act on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Untranslatable(PatternError):
    """The pattern is valid but the target language cannot express it exactly."""
