"""The command line as a user meets it: exit statuses, messages, no tracebacks, no secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stix_validation import assert_valid_bundle

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "normalised-alerts.ndjson"


def ctibridge(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script in a clean environment, as a user would."""
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, "-m", "ctibridge.cli", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        cwd=ROOT,
    )


def test_version() -> None:
    result = ctibridge("--version")
    assert result.returncode == 0
    assert "ctibridge, version" in result.stdout


def test_check_with_empty_environment_names_the_required_settings() -> None:
    result = ctibridge("check", "elastic-incidents")
    assert result.returncode == 2
    for name in ("OPENCTI_URL", "OPENCTI_TOKEN", "CONNECTOR_ID", "ELASTIC_SECURITY_URL"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_check_never_echoes_a_secret() -> None:
    secret = "sup3r-s3cret-t0ken-value"
    env = {
        "OPENCTI_URL": "not a url",
        "OPENCTI_TOKEN": secret,
        "CONNECTOR_ID": "x",
        "ELASTIC_SECURITY_URL": "http://127.0.0.1:1",
        "ELASTIC_SECURITY_API_KEY": secret,
        "ELASTIC_SECURITY_VERIFY_SSL": secret,
    }
    result = ctibridge("check", "elastic-incidents", env=env)
    assert result.returncode == 2
    assert "ELASTIC_SECURITY_VERIFY_SSL" in result.stderr
    assert secret not in result.stderr + result.stdout


def test_check_connect_reports_each_endpoint_without_secrets() -> None:
    secret = "sup3r-s3cret-t0ken-value"
    env = {
        "OPENCTI_URL": "http://127.0.0.1:9",
        "OPENCTI_TOKEN": secret,
        "CONNECTOR_ID": "x",
        "ELASTIC_SECURITY_URL": "http://127.0.0.1:9",
        "ELASTIC_SECURITY_API_KEY": secret,
    }
    result = ctibridge("check", "elastic-incidents", "--connect", env=env)
    assert result.returncode == 1
    assert "configuration ok" in result.stdout
    for name in ("opencti", "elasticsearch", "kibana"):
        assert any(line.strip().startswith(name) and "failed" in line for line in result.stdout.splitlines())
    assert secret not in result.stdout + result.stderr


def test_unknown_connector_is_a_usage_error() -> None:
    result = ctibridge("check", "splunk")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_convert_sample_to_file(tmp_path: Path) -> None:
    out = tmp_path / "bundle.json"
    result = ctibridge("convert", "alerts", str(SAMPLE), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "read 7 record(s), skipped 1" in result.stdout
    assert "incident" in result.stdout
    bundle = json.loads(out.read_text())
    assert bundle["type"] == "bundle"
    types = [o["type"] for o in bundle["objects"]]
    assert types.count("incident") == 6
    assert len(types) == len({o["id"] for o in bundle["objects"]})
    assert_valid_bundle(bundle)
    # bad values in the sample are dropped, not passed on
    values = {o.get("value") for o in bundle["objects"]}
    assert "not-an-ip" not in values
    assert all("not-a-valid-hash" not in json.dumps(o) for o in bundle["objects"])
    # a rerun produces the same bytes: deterministic ids, deterministic bundle id
    again = tmp_path / "again.json"
    assert ctibridge("convert", "alerts", str(SAMPLE), "-o", str(again)).returncode == 0
    assert again.read_bytes() == out.read_bytes()


def test_convert_from_stdin_to_stdout_with_tlp() -> None:
    line = SAMPLE.read_text().splitlines()[0]
    result = ctibridge("convert", "alerts", "-", "--tlp", "red", stdin=line + "\n")
    assert result.returncode == 0, result.stderr
    bundle = json.loads(result.stdout)
    incident = next(o for o in bundle["objects"] if o["type"] == "incident")
    assert incident["object_marking_refs"] == ["marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"]
    assert "read 1 record(s)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["convert", "nope", "x"], "unknown kind"),
        (["convert", "alerts", "/does/not/exist"], "cannot read"),
        (["convert", "alerts", str(SAMPLE), "--tlp", "purple"], "--tlp"),
    ],
)
def test_convert_usage_errors(args: list[str], message: str) -> None:
    result = ctibridge(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("kind", "content", "reason"),
    [
        ("alerts", "this is not json\n{also not}\n", "neither NDJSON nor a JSON document"),
        ("elastic-alerts", "\n  \n", "is empty"),
    ],
)
def test_unreadable_input_is_reported_and_nothing_written(
    tmp_path: Path, kind: str, content: str, reason: str
) -> None:
    source = tmp_path / "input.json"
    source.write_text(content)
    result = ctibridge("convert", kind, str(source))
    assert result.returncode == 2
    assert reason in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""  # not the head of a bundle that never closes


def test_a_line_that_is_not_utf8_is_skipped_and_named(tmp_path: Path) -> None:
    lines = SAMPLE.read_bytes().splitlines()[:3]
    broken = tmp_path / "broken.ndjson"
    broken.write_bytes(b"\n".join([lines[0], b'{"name": "caf\xe9"}', lines[2]]) + b"\n")
    result = ctibridge("convert", "alerts", str(broken), "-o", str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stderr
    assert "line 2: not UTF-8" in result.stderr
    assert "read 3 record(s), skipped 1," in result.stdout  # the unreadable line counts as skipped
    assert "Traceback" not in result.stderr


def test_a_document_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'[{"name": "caf\xe9"},\n 1]')
    result = ctibridge("convert", "alerts", str(broken))
    assert result.returncode == 2
    assert "is not UTF-8 text" in result.stderr
    assert "Traceback" not in result.stderr


def test_byte_order_mark_and_non_ascii_text_come_through(tmp_path: Path) -> None:
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:2]]
    records[0]["name"] = "Mimikatz sur l'hôte Zürich — 東京"
    source = tmp_path / "bom.json"
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps(records, ensure_ascii=False).encode())
    result = ctibridge("convert", "alerts", str(source))
    assert result.returncode == 0, result.stderr
    bundle = json.loads(result.stdout)  # bytes written past the text layer are UTF-8, as JSON requires
    names = {o.get("name") for o in bundle["objects"] if o["type"] == "incident"}
    assert "Mimikatz sur l'hôte Zürich — 東京" in names
    assert_valid_bundle(bundle)


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    result = ctibridge(
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "convert",
        "alerts",
        str(SAMPLE),
        "-o",
        str(tmp_path / "b.json"),
    )
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "debug logging produced lines"
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)
    assert any("dropped invalid" in json.loads(line)["message"] for line in lines)


def test_readme_quickstart_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = [block.strip() for block in quickstart.split("```sh")[1:]]
    commands = [block.split("```", 1)[0].strip() for block in commands]
    assert len(commands) == 2
    main_job, test_command = commands
    assert "ctibridge convert elastic-alerts examples/" in main_job
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_readme_main_job_sample_converts_to_valid_stix(tmp_path: Path) -> None:
    out = tmp_path / "out" / "elastic-bundle.json"  # a directory that does not exist yet, as on a fresh clone
    result = ctibridge("convert", "elastic-alerts", "examples/elastic-alerts.ndjson", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "read 40 record(s), skipped 0" in result.stdout
    bundle = json.loads(out.read_text())
    assert sum(o["type"] == "incident" for o in bundle["objects"]) == 40
    assert_valid_bundle(bundle)


def test_the_main_job_loads_neither_pycti_nor_stix2(tmp_path: Path) -> None:
    """Alert ids are computed without them; importing them would double the command's start-up time."""
    args = ["ctibridge", "convert", "elastic-alerts", str(ROOT / "examples" / "elastic-alerts.ndjson")]
    args += ["-o", str(tmp_path / "b.json")]
    code = (
        f"import runpy, sys\nsys.argv = {args!r}\n"
        "try:\n    runpy.run_module('ctibridge.cli', run_name='__main__')\nexcept SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(sorted(name for name in ('pycti', 'stix2') if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert json.loads((tmp_path / "b.json").read_text())["type"] == "bundle"
