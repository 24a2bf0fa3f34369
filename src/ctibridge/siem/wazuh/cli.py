"""`ctibridge hunt-query wazuh ENTITY_JSON`: the OpenSearch request body a hunt would send, offline.

Needs no environment: search options default, and `WAZUH_SEARCH_*` / `WAZUH_OPENSEARCH_*` values that are
set are honoured, so the printed body is the one the connector would send with the same settings.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from ctibridge.config.base import describe_errors
from ctibridge.config.types import split_list
from ctibridge.errors import ConfigurationError, InputError

__all__ = ["hunt_query"]

# Offline: the URL is never contacted; a real WAZUH_OPENSEARCH_URL from the environment still wins.
_OFFLINE_URL = "http://offline.invalid"


@click.command("hunt-query")
@click.argument("siem", type=click.Choice(["wazuh"]))
@click.argument("entity_json", metavar="ENTITY_JSON")
def hunt_query(siem: str, entity_json: str) -> None:
    """Print the search request for a STIX entity (a file, @FILE, or - for stdin).

    ENTITY_JSON holds a STIX object, or a bundle whose first object is the entity (the other objects
    resolve references such as network-traffic src_ref or a file's parent directory).
    """
    from ctibridge.cli import _errors_to_exit

    with _errors_to_exit():
        entity, related = read_entity(entity_json)
        hunter = offline_hunter()
        body = hunter.build(entity, related)
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))


def offline_hunter() -> Any:
    from ctibridge.config.wazuh import WazuhOpenSearchSettings, WazuhSearchSettings
    from ctibridge.siem.wazuh.hunt import WazuhHunter

    problems: dict[str, str] = {}
    opensearch = search = None
    try:
        opensearch = WazuhOpenSearchSettings(url=_OFFLINE_URL)
    except ValidationError as exc:
        problems.update(describe_errors(WazuhOpenSearchSettings, exc))
    try:
        search = WazuhSearchSettings()
    except ValidationError as exc:
        problems.update(describe_errors(WazuhSearchSettings, exc))
    try:
        excluded = split_list(os.environ.get("WAZUH_RULE_EXCLUDE_LIST", ""))
    except ValueError as exc:
        problems["WAZUH_RULE_EXCLUDE_LIST"] = str(exc)
    if problems or opensearch is None or search is None:
        raise ConfigurationError(problems)
    return WazuhHunter(None, opensearch, search, exclude_rule_ids=excluded)


def read_entity(argument: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The entity and the other objects of its bundle; InputError with the reason otherwise."""
    source = argument[1:] if argument.startswith("@") else argument
    if source == "-":
        text = sys.stdin.read()
        name = "stdin"
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read {source}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InputError(f"{source} is not UTF-8 text") from None
        name = source
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} is not valid JSON (line {exc.lineno})") from None
    if not isinstance(document, dict):
        raise InputError(f"{name} must hold a STIX object or a bundle")
    if document.get("type") == "bundle":
        objects = document.get("objects")
        if not isinstance(objects, list) or not objects or not isinstance(objects[0], dict):
            raise InputError(f"{name}: the bundle has no objects")
        related = [obj for obj in objects[1:] if isinstance(obj, dict)]
        document = objects[0]
    else:
        related = []
    if not isinstance(document.get("type"), str):
        raise InputError(f"{name}: the entity has no STIX type")
    return document, related
