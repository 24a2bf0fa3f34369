"""The `ctibridge` command. Exit status: 0 success, 1 runtime failure, 2 usage or configuration error."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import click

from ctibridge import __version__
from ctibridge.config import CONNECTOR_CONFIGS
from ctibridge.errors import ConfigurationError, CtiBridgeError, InputError
from ctibridge.logs import configure_logging, redact

log = logging.getLogger("ctibridge")
CONNECTOR_NAMES = sorted(CONNECTOR_CONFIGS)


def _fail(message: str, status: int) -> None:
    click.echo(redact(f"error: {message}"), err=True)
    raise SystemExit(status)


@contextlib.contextmanager
def _errors_to_exit() -> Any:
    """Mistakes in configuration or input exit 2 with a message, failures exit 1; never a traceback."""
    try:
        yield
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    except InputError as exc:
        _fail(str(exc), 2)
    except CtiBridgeError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 1)
    except (SystemExit, click.exceptions.Exit, click.ClickException):
        raise
    except Exception as exc:
        log.debug("unexpected failure", exc_info=True)
        _fail(f"{type(exc).__name__}: {exc}", 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ctibridge")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    envvar="CONNECTOR_LOG_LEVEL",
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    envvar="CONNECTOR_LOG_FORMAT",
    default="text",
    show_default=True,
)
def cli(log_level: str, log_format: str) -> None:
    """Connect OpenCTI with Elastic Security, Microsoft Sentinel / Defender and Wazuh."""
    configure_logging(log_level.lower(), log_format.lower())


config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CTIBRIDGE_CONFIG",
    help="YAML file with the same groups as the environment (opencti, connector, ...); environment wins.",
)


@cli.command()
@click.argument("connector", type=click.Choice(CONNECTOR_NAMES))
@config_option
@click.option("--connect", is_flag=True, help="Also reach every configured endpoint and report each.")
def check(connector: str, config_file: Path | None, connect: bool) -> None:
    """Validate a connector's configuration (and, with --connect, its endpoints)."""
    from ctibridge.checks import probe_endpoints

    with _errors_to_exit():
        config = CONNECTOR_CONFIGS[connector].load(config_file)
        click.echo(f"{connector}: configuration ok")
        if not connect:
            return
        failures = 0
        for result in probe_endpoints(config):
            failures += not result.ok
            status = (
                ("ok" + (f": {result.reason}" if result.reason else ""))
                if result.ok
                else f"failed: {result.reason}"
            )
            click.echo(redact(f"  {result.name:<28} {result.url:<40} {status}"))
        if failures:
            raise SystemExit(1)


@cli.command()
@click.argument("connector", type=click.Choice(CONNECTOR_NAMES))
@config_option
@click.option(
    "--dry-run",
    "dry_run",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write bundles and state to this directory instead of sending them to OpenCTI.",
)
@click.option(
    "--events",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="With --dry-run: stream events or enrichment requests to replay from a file.",
)
def run(connector: str, config_file: Path | None, dry_run: Path | None, events: Path | None) -> None:
    """Run a connector against OpenCTI (or, with --dry-run, against a directory)."""
    from ctibridge.connectors import build_connector
    from ctibridge.platform.factory import file_platform, opencti_platform

    with _errors_to_exit():
        config = CONNECTOR_CONFIGS[connector].load(config_file, offline=dry_run is not None)
        configure_logging(config.connector.log_level, config.connector.log_format)
        platform = file_platform(dry_run, events) if dry_run else opencti_platform(config)
        try:
            build_connector(connector, config, platform).run()
        finally:
            platform.stop()


@cli.command()
@click.argument("kind", metavar="KIND")
@click.argument("source", metavar="FILE")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout."
)
@click.option("--tlp", default="TLP:AMBER", show_default=True, help="Marking of every object created.")
@click.option("--author", help="Name of the author identity (default depends on KIND).")
def convert(kind: str, source: str, output: Path | None, tlp: str, author: str | None) -> None:
    """Convert FILE ('-' for stdin) offline.

    \b
    Kinds:
      elastic-alerts   Kibana alert documents (NDJSON, JSON array, search response) -> STIX bundle
      kibana-cases     a Cases _find response or one case -> STIX bundle
      graph-incidents  a Graph incidents list (alerts expanded) or one incident -> STIX bundle
      stix-to-ecs      a STIX bundle -> NDJSON of ECS threat-indicator documents (_index, _id, _source)
      stix-to-rules    a STIX bundle -> JSON array of Kibana detection-rule bodies
      alerts, cases    ctibridge's normalised model (JSON/NDJSON) -> STIX bundle
    """
    from ctibridge.convert import CONVERTERS, run_conversion
    from ctibridge.stix import StixBuilder, parse_tlp

    _load_converters()
    if kind not in CONVERTERS:
        _fail(f"unknown kind {kind!r}; choose from {', '.join(sorted(CONVERTERS))}", 2)
    converter = CONVERTERS[kind]
    try:
        marking = parse_tlp(tlp)
    except ValueError as exc:
        _fail(f"--tlp: {exc}", 2)
    builder = StixBuilder(author_name=author or converter.default_author, tlp=marking)
    with _errors_to_exit():
        if output is None:
            stats = run_conversion(converter, source, sys.stdout, builder)
            click.echo(stats.summary(kind, "stdout"), err=True)
            return
        partial = output.with_name(output.name + ".partial")
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("w", encoding="utf-8") as handle:
                stats = run_conversion(converter, source, handle, builder)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(output)
        click.echo(stats.summary(kind, str(output)))


def _load_converters() -> None:
    """Import the SIEM packages so their conversion kinds register themselves."""
    from ctibridge.connectors import load_converters

    load_converters()


def _register_commands() -> None:
    from ctibridge.patterns.cli import translate
    from ctibridge.siem.wazuh.cli import hunt_query

    cli.add_command(translate)
    cli.add_command(hunt_query)


_register_commands()


def main() -> None:
    cli.main(prog_name="ctibridge")


if __name__ == "__main__":
    main()
