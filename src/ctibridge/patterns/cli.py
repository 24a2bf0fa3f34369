"""`ctibridge translate`: print the query for a pattern; exit 2 with the reason when there is none."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ctibridge.patterns.api import SOURCES, TARGETS
from ctibridge.patterns.api import translate as translate_pattern
from ctibridge.patterns.errors import PatternError
from ctibridge.patterns.fieldmap import BUILTIN_MAPS, FieldMap

__all__ = ["translate"]


@click.command("translate")
@click.option(
    "--from",
    "source",
    type=click.Choice(SOURCES),
    default="stix",
    show_default=True,
    help="Language of PATTERN.",
)
@click.option("--to", "target", type=click.Choice(TARGETS), required=True, help="Query language to produce.")
@click.option("--index", default=None, help="ES|QL FROM index pattern or Kusto table.")
@click.option(
    "--schema",
    type=click.Choice(BUILTIN_MAPS),
    default=None,
    help="Built-in field map for STIX (default: ecs; wazuh for opensearch; microsoft for kusto).",
)
@click.option(
    "--field-map",
    "field_map_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML/JSON file whose entries override the field map.",
)
@click.argument("pattern")
def translate(
    source: str, target: str, index: str | None, schema: str | None, field_map_file: Path | None, pattern: str
) -> None:
    """Translate PATTERN (the text, or @FILE to read it from a file) into a SIEM query."""
    try:
        text = _read_pattern(pattern)
        field_map: FieldMap | Path | None = None
        if schema is not None:
            field_map = FieldMap.builtin(schema)
            if field_map_file is not None:
                field_map = field_map.with_overrides(field_map_file)
        elif field_map_file is not None:
            field_map = field_map_file
        result = translate_pattern(text, source=source, target=target, field_map=field_map, index=index)
    except (PatternError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    click.echo(json.dumps(result, indent=2, ensure_ascii=False) if isinstance(result, dict) else result)


def _read_pattern(argument: str) -> str:
    if not argument.startswith("@"):
        return argument
    path = Path(argument[1:])
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
