"""Exception hierarchy: callers catch precise types, the CLI maps them to exit codes."""

from __future__ import annotations


class CtiBridgeError(Exception):
    """Base of every error ctibridge raises on purpose."""


class ConfigurationError(CtiBridgeError):
    """A setting is missing or invalid; `problems` maps environment names to reasons (never values)."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        lines = [f"  {name}: {reason}" for name, reason in sorted(self.problems.items())]
        super().__init__("invalid configuration:\n" + "\n".join(lines))


class InputError(CtiBridgeError):
    """Input data (a file, a stream message) cannot be read as the expected format."""


class DeliveryError(CtiBridgeError):
    """Objects could not be delivered to the platform; state must not advance."""


class RemoteError(CtiBridgeError):
    """A remote service answered with an error after retries were exhausted."""

    def __init__(self, service: str, message: str, status: int | None = None) -> None:
        self.service = service
        self.status = status
        super().__init__(f"{service}: {message}" + (f" (HTTP {status})" if status else ""))
