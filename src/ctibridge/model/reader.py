"""Read the normalised model from JSON: a SIEM-agnostic input for `ctibridge convert alerts`.

Observables are written with their STIX type names (`{"type": "ipv4-addr", "value": "..."}`); a record
that cannot be read is skipped with a warning naming it, never the whole file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from ctibridge.config.types import parse_datetime
from ctibridge.errors import InputError
from ctibridge.model import observables as o
from ctibridge.model.alerts import Alert, Case, Comment, Host, Link, Rule, Technique, parse_severity

log = logging.getLogger(__name__)


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        log.debug("ignored unreadable time %r", value)
        return None


def _required_time(record: Mapping[str, Any], key: str) -> datetime:
    value = _time(record.get(key))
    if value is None:
        raise InputError(f"'{key}' is missing or not a date-time")
    return value


def _file(data: Mapping[str, Any]) -> o.File | None:
    return o.make_file(
        name=data.get("name"),
        hashes=data.get("hashes"),
        size=data.get("size"),
        directory=data.get("directory"),
        path=data.get("path"),
        mime_type=data.get("mime_type"),
    )


def _user(data: Mapping[str, Any]) -> o.UserAccount | None:
    return o.make_user(
        login=data.get("login") or data.get("account_login"),
        user_id=data.get("user_id"),
        display_name=data.get("display_name"),
        domain=data.get("domain"),
        email=data.get("email"),
    )


def _process(data: Mapping[str, Any]) -> o.Process | None:
    parent = data.get("parent")
    image = data.get("image")
    user = data.get("user")
    return o.make_process(
        pid=data.get("pid"),
        command_line=data.get("command_line"),
        name=data.get("name"),
        image=_file(image) if isinstance(image, Mapping) else None,
        cwd=data.get("cwd"),
        created=_time(data.get("created")),
        parent=_process(parent) if isinstance(parent, Mapping) else None,
        user=_user(user) if isinstance(user, Mapping) else None,
    )


def _registry(data: Mapping[str, Any]) -> o.RegistryKey | None:
    values = tuple(
        o.RegistryValue(str(v["name"]), v.get("data"), v.get("data_type"))
        for v in data.get("values") or ()
        if isinstance(v, Mapping) and v.get("name") is not None
    )
    return o.make_registry_key(data.get("key"), values)


def _network(data: Mapping[str, Any]) -> o.NetworkTraffic | None:
    return o.make_network_traffic(
        data.get("src"), data.get("dst"), data.get("src_port"), data.get("dst_port"), data.get("protocols")
    )


_OBSERVABLE_READERS: dict[str, Callable[[Mapping[str, Any]], o.Observable | None]] = {
    "ipv4-addr": lambda d: o.make_ip(d.get("value")),
    "ipv6-addr": lambda d: o.make_ip(d.get("value")),
    "ip": lambda d: o.make_ip(d.get("value")),
    "domain-name": lambda d: o.make_domain(d.get("value")),
    "hostname": lambda d: o.make_hostname(d.get("value")),
    "url": lambda d: o.make_url(d.get("value")),
    "email-addr": lambda d: o.make_email(d.get("value"), d.get("display_name")),
    "mac-addr": lambda d: o.make_mac(d.get("value")),
    "user-agent": lambda d: o.make_user_agent(d.get("value")),
    "autonomous-system": lambda d: o.make_asn(d.get("number"), d.get("name")),
    "directory": lambda d: o.make_directory(d.get("path")),
    "file": _file,
    "user-account": _user,
    "process": _process,
    "windows-registry-key": _registry,
    "network-traffic": _network,
    "software": lambda d: (
        o.Software(str(d["name"]), d.get("version"), d.get("vendor")) if d.get("name") else None
    ),
}


def read_observable(data: Any) -> o.Observable | None:
    if not isinstance(data, Mapping):
        return None
    reader = _OBSERVABLE_READERS.get(str(data.get("type", "")).lower())
    if reader is None:
        log.debug("skipped observable of unknown type %r", data.get("type"))
        return None
    return reader(data)


def _host(data: Any) -> Host | None:
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, Mapping) or not data.get("name"):
        return None
    name = str(data["name"]).strip()
    ips = tuple(ip for ip in (o.make_ip(v) for v in _as_list(data.get("ips"))) if ip)
    return Host(
        name=name,
        hostname=o.make_hostname(data.get("hostname") or name),
        ips=ips,
        id=data.get("id"),
        os=data.get("os"),
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _links(values: Any) -> list[Link]:
    return [
        Link(str(v["source_name"]), v.get("url"), v.get("external_id"), v.get("description"))
        for v in _as_list(values)
        if isinstance(v, Mapping) and v.get("source_name")
    ]


def _techniques(values: Any) -> list[Technique]:
    out = []
    for value in _as_list(values):
        if isinstance(value, str):
            value = {"id": value}
        if isinstance(value, Mapping) and value.get("id"):
            out.append(
                Technique(str(value["id"]).upper(), value.get("name"), tuple(_as_list(value.get("tactics"))))
            )
    return out


def read_alert(record: Mapping[str, Any]) -> Alert:
    """One alert; raises InputError naming what is missing."""
    for key in ("source", "id", "name"):
        if not record.get(key):
            raise InputError(f"'{key}' is missing")
    rule = record.get("rule")
    return Alert(
        source=str(record["source"]),
        id=str(record["id"]),
        name=str(record["name"]),
        created=_required_time(record, "created"),
        description=str(record.get("description") or ""),
        rule=Rule(
            str(rule["name"]), rule.get("id"), rule.get("description"), rule.get("type"), rule.get("url")
        )
        if isinstance(rule, Mapping) and rule.get("name")
        else None,
        severity=parse_severity(record.get("severity")),
        risk_score=record.get("risk_score"),
        status=record.get("status"),
        first_seen=_time(record.get("first_seen")),
        last_seen=_time(record.get("last_seen")),
        updated=_time(record.get("updated")),
        tags=[str(t) for t in _as_list(record.get("tags"))],
        hosts=[h for h in (_host(v) for v in _as_list(record.get("hosts"))) if h],
        users=[u for u in (_user(v) for v in _as_list(record.get("users")) if isinstance(v, Mapping)) if u],
        observables=[obs for obs in (read_observable(v) for v in _as_list(record.get("observables"))) if obs],
        techniques=_techniques(record.get("techniques")),
        links=_links(record.get("links")),
        raw_ref=record.get("raw_ref"),
        incident_type=str(record.get("incident_type") or "alert"),
    )


def read_case(record: Mapping[str, Any]) -> Case:
    for key in ("source", "id", "name"):
        if not record.get(key):
            raise InputError(f"'{key}' is missing")
    comments = [
        Comment(str(c["text"]), _required_time(c, "created"), c.get("author"), c.get("id"))
        for c in _as_list(record.get("comments"))
        if isinstance(c, Mapping) and c.get("text")
    ]
    return Case(
        source=str(record["source"]),
        id=str(record["id"]),
        name=str(record["name"]),
        created=_required_time(record, "created"),
        description=str(record.get("description") or ""),
        updated=_time(record.get("updated")),
        status=record.get("status"),
        severity=parse_severity(record.get("severity")),
        priority=record.get("priority"),
        tags=[str(t) for t in _as_list(record.get("tags"))],
        comments=comments,
        alerts=list(read_records(_as_list(record.get("alerts")), read_alert, "alert")),
        observables=[obs for obs in (read_observable(v) for v in _as_list(record.get("observables"))) if obs],
        links=_links(record.get("links")),
    )


def read_records(
    records: Iterable[Any], reader: Callable[[Mapping[str, Any]], Any], kind: str
) -> Iterator[Any]:
    """Apply `reader` to each record, logging and skipping the ones that cannot be read."""
    for index, record in enumerate(records):
        if type(record) is not dict and not isinstance(record, Mapping):
            log.warning("skipped %s #%d: not a JSON object", kind, index + 1)
            continue
        try:
            yield reader(record)
        except (InputError, KeyError, TypeError, ValueError) as exc:
            log.warning("skipped %s #%d (id %s): %s", kind, index + 1, record.get("id", "?"), exc)
