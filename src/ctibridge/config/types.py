"""Setting value types in the spellings users of the official connectors already write.

Environment variables are strings: lists come as `a,b` or JSON, booleans as true/yes/1, durations as
ISO-8601 (`PT30M`), dates as `YYYY-MM-DD` or ISO-8601. Validators never echo the offending value, because
the same code path parses secrets.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, PlainSerializer
from pydantic_settings import NoDecode

from ctibridge.memo import keep
from ctibridge.stix.markings import Tlp, parse_tlp

_ISO_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def split_list(value: Any) -> Any:
    """Accept a list, a JSON list, or a comma-separated string; drop blanks."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError("not a valid JSON list") from exc
        else:
            value = text.split(",")
    if isinstance(value, (list, tuple, set)):
        return [str(item).strip() for item in value if str(item).strip()]
    raise ValueError("expected a comma-separated list")


def parse_duration(value: Any) -> timedelta:
    """ISO-8601 duration (`PT30M`, `P1D`), a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            return timedelta(seconds=int(text))
        match = _ISO_DURATION.match(text)
        if match:
            parts = {k: float(v) for k, v in match.groupdict().items() if v}
            return timedelta(**parts)
    raise ValueError("expected an ISO-8601 duration such as PT30M or P1D")


def format_duration(value: timedelta) -> str:
    """Render a timedelta back to ISO-8601, the form pycti's scheduler takes."""
    total = int(value.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    clock = (
        (f"{hours}H" if hours else "")
        + (f"{minutes}M" if minutes else "")
        + (f"{seconds}S" if seconds else "")
    )
    if clock:
        out += "T" + clock
    return out if out != "P" else "PT0S"


def parse_datetime(value: Any) -> datetime:
    """`YYYY-MM-DD` or ISO-8601; naive values are UTC, the only zone SIEM APIs agree on."""
    if type(value) is str:
        # Alerts of one rule run share their timestamps: parse each text once (datetimes are immutable).
        parsed = _PARSED.get(value)
        return parsed if parsed is not None else keep(_PARSED, value, _parse_datetime(value), 1024)
    return _parse_datetime(value)


_PARSED: dict[str, datetime] = {}


def _parse_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError("expected a date YYYY-MM-DD or an ISO-8601 date-time") from exc
    else:
        raise ValueError("expected a date YYYY-MM-DD or an ISO-8601 date-time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _lower_items(items: list[str]) -> list[str]:
    return [item.lower() for item in items]


def parse_status_map(value: Any) -> Any:
    """`siem-status:OPENCTI_STATUS` pairs, comma-separated (or a JSON object); `none` maps nothing.

    SIEM statuses are matched in lower case, OpenCTI status names as the platform spells them, so
    both sides are kept as written here and compared case-insensitively where they are used.
    """
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, str) and value.strip().startswith("{"):
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError("not a valid JSON object") from exc
        if not isinstance(loaded, dict):
            raise ValueError("expected a JSON object of status names")
        pairs = list(loaded.items())
    elif isinstance(value, str) and value.strip().lower() in ("none", "false"):
        return {}
    else:
        pairs = []
        for item in split_list(value):
            siem, sep, opencti = item.partition(":")
            if not sep or not siem.strip() or not opencti.strip():
                raise ValueError("expected siem-status:OPENCTI_STATUS pairs, comma-separated")
            pairs.append((siem, opencti))
    mapping: dict[str, str] = {}
    for siem, opencti in pairs:
        if not (isinstance(siem, str) and siem.strip() and isinstance(opencti, str) and opencti.strip()):
            raise ValueError("each status and the OpenCTI status it maps to must be non-empty text")
        key = siem.strip().lower()
        if key in mapping:
            raise ValueError(f"status {key} is mapped twice")
        mapping[key] = opencti.strip()
    return mapping


_Statuses = TypeVar("_Statuses", list[str], dict[str, str])


def known_statuses(given: _Statuses, allowed: set[str]) -> _Statuses:
    """`given` (a status list, or a status mapping by its keys) when every status is one of `allowed`."""
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(f"unknown status {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
    return given


CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
StatusMap = Annotated[dict[str, str], NoDecode, BeforeValidator(parse_status_map)]
LowerCommaList = Annotated[list[str], NoDecode, BeforeValidator(split_list), AfterValidator(_lower_items)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
UtcDatetime = Annotated[datetime, BeforeValidator(parse_datetime)]
TlpLevel = Annotated[Tlp, BeforeValidator(parse_tlp)]
