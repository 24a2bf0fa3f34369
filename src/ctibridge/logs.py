"""Logging: one line per event, text or JSON, with every known secret redacted.

Secrets are redacted at the handler, after formatting, so nothing that reaches a log line can carry
one: not our messages, not a library's, not an exception text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

REDACTED = "***"
_secrets: set[str] = set()
_lock = threading.Lock()

# Names whose value is a credential, in key=value and "key": "value" text and as `extra` fields.
_CREDENTIAL_KEYS = "client_secret|password|passwd|access_token|refresh_token|token|api_key|apikey"
# Credentials that can show up in library messages even when we never saw them as settings.
_CREDENTIAL_PATTERNS = [
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer|apikey|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)\b(bearer|apikey)\s+[A-Za-z0-9._~+/=-]{8,}"),
    # key=value and "key": "value", as in form bodies, URLs and JSON; not "SETTING_TOKEN: reason".
    re.compile(
        rf"((?:{_CREDENTIAL_KEYS})"
        r"(?:=|[\"']\s*:\s*[\"']))[^\s\"'&,}]+",
        re.IGNORECASE,
    ),
    re.compile(r"(?i)(https?://[^/\s:@]+:)[^@\s/]+(@)"),
]


def register_secret(value: str | None) -> None:
    """Remember a secret so that it is replaced by *** wherever it would be logged."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Replace every registered secret and credential-looking token in `text`."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _CREDENTIAL_PATTERNS:
        text = pattern.sub(_mask, text)
    return text


def _mask(match: re.Match[str]) -> str:
    groups = [g for g in match.groups() if g is not None]
    if len(groups) >= 2 and groups[-1] == "@":
        return f"{groups[0]}{REDACTED}@"
    if match.re is _CREDENTIAL_PATTERNS[1]:
        return f"{groups[0]} {REDACTED}"
    if match.re is _CREDENTIAL_PATTERNS[0]:
        return f"{groups[0]}{groups[1]} {REDACTED}"
    return f"{groups[0]}{REDACTED}"


# A record's own attributes; anything else on it came from `extra=` (or a library's equivalent).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# A field named like a credential is masked whole, whatever its value looks like.
_SECRET_FIELD = re.compile(rf"(?:{_CREDENTIAL_KEYS})$", re.IGNORECASE)


def _extra_fields(record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
    """The record's structured fields (`extra=`), in the order they were given."""
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            yield key, value


def _scrub(value: Any, depth: int = 0) -> Any:
    """`value` with its text redacted, through lists, tuples and dicts, before repr escapes it.

    repr writes a quote or backslash in a secret as an escape, which the literal search of `redact`
    would no longer find in the line. Deeper than a few levels (or a list holding itself), the value's
    repr is left to the redaction of the whole line.
    """
    if isinstance(value, str):
        return redact(value)
    if depth >= 4:
        return value
    if type(value) in (list, tuple):  # exactly: a named tuple's constructor takes no iterable
        return type(value)(_scrub(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {_scrub(k, depth + 1): _scrub(v, depth + 1) for k, v in value.items()}
    return value


def _redacted_text(value: Any) -> str:
    """What JSON lines show of a value JSON cannot encode: its text, redacted before it is escaped."""
    return redact(str(value))


def _field_text(key: str, value: Any) -> str:
    if _SECRET_FIELD.search(key):
        return f"{key}={REDACTED}"
    return f"{key}={redact(repr(_scrub(value)))}"


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record)).replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        # Redacted before encoding, as for text lines: JSON writes a quote or backslash in a secret as an
        # escape, which the search of the finished line would no longer find.
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in _extra_fields(record):
            entry[key] = REDACTED if _SECRET_FIELD.search(key) else _scrub(value)
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return redact(json.dumps(entry, default=_redacted_text, ensure_ascii=False))


class TextFormatter(_RedactingFormatter):
    """`time LEVEL logger: message key=value...`: the `extra` fields after the message, values repr'd.

    The fields are part of the line `_RedactingFormatter` redacts; each value is redacted on its own
    first too (see `_scrub`), and a field named like a credential shows only ***.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Here rather than in format(): the fields then come before an exception's traceback.
        line = super().formatMessage(record)
        fields = " ".join(_field_text(key, value) for key, value in _extra_fields(record))
        return f"{line} {fields}" if fields else line


def configure_logging(level: str = "info", fmt: str = "text", stream: Any = None) -> None:
    """Install one handler on the root logger; quiet chatty libraries below WARNING."""
    level_name = {"warn": "WARNING"}.get(level.lower(), level.upper())
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level_name)
    for noisy in ("urllib3", "elastic_transport", "httpx", "httpcore", "pika", "opensearch", "msal"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
