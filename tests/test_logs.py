"""Logs: one line per event, JSON on request, and no secret ever reaches a line."""

from __future__ import annotations

import io
import json
import logging

from ctibridge.logs import configure_logging, redact, register_secret


def test_registered_secrets_and_credentials_are_redacted() -> None:
    register_secret("hunter2-but-longer")
    samples = {
        "token hunter2-but-longer leaked": "hunter2-but-longer",
        "Authorization: ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==": "VnVhQ2Zn",
        '{"authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc"}': "eyJhbGci",
        "POST body client_secret=s3cr3t&grant_type=client_credentials": "s3cr3t",
        "https://admin:pa55word@indexer:9200/": "pa55word",
        '{"password": "opensearch-pass"}': "opensearch-pass",
    }
    for text, secret in samples.items():
        assert secret not in redact(text), text
    assert redact("OPENCTI_TOKEN: required, not set") == "OPENCTI_TOKEN: required, not set"


def test_json_format_and_redaction_through_logging() -> None:
    register_secret("another-secret-value")
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    logging.getLogger("ctibridge.test").info("sent with another-secret-value", extra={"work_id": "w1"})
    try:
        raise ValueError("multi\nline")
    except ValueError:
        logging.getLogger("ctibridge.test").exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "sent with ***" and first["work_id"] == "w1" and first["level"] == "info"
    assert "ValueError" in second["error"]


def test_text_format_is_one_line_per_event() -> None:
    stream = io.StringIO()
    configure_logging("debug", "text", stream)
    logging.getLogger("ctibridge.test").debug("a\nb")
    assert stream.getvalue().count("\n") == 1
    configure_logging("info", "text")


def test_text_format_shows_extra_fields_after_the_message() -> None:
    stream = io.StringIO()
    configure_logging("info", "text", stream)
    try:
        log = logging.getLogger("ctibridge.test")
        log.info("imported Microsoft Graph incidents", extra={"incidents": 3, "skipped": "invalid:ip 1"})
        log.info("no fields")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", extra={"work_id": "w1", "_private": "hidden"})
    finally:
        configure_logging("info", "text")
    summary, plain, failed = stream.getvalue().splitlines()
    assert summary.endswith(
        " ctibridge.test: imported Microsoft Graph incidents incidents=3 skipped='invalid:ip 1'"
    )
    assert plain.endswith(" ctibridge.test: no fields")
    # The fields belong to the message, before the traceback; fields named with "_" stay out, as in JSON.
    assert " ctibridge.test: failed work_id='w1'\\nTraceback" in failed and "hidden" not in failed


def test_text_format_fields_are_redacted() -> None:
    secret = "s3cr'et\\with-quotes\"x"  # escaped by repr, so the line would not hold it verbatim
    register_secret(secret)
    stream = io.StringIO()
    configure_logging("info", "text", stream)
    try:
        logging.getLogger("ctibridge.test").warning(
            "login failed",
            extra={
                "detail": f"refused {secret}",
                "tried": {"client": [secret, "ok"]},
                "header": "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc",
                "password": "plain-looking",
                "api_token": 12345678,
            },
        )
    finally:
        configure_logging("info", "text")
    line = stream.getvalue()
    for leaked in (secret, repr(secret)[1:-1], "eyJhbGci", "plain-looking", "12345678"):
        assert leaked not in line, leaked
    assert "detail='refused ***'" in line and "tried={'client': ['***', 'ok']}" in line
    assert "password=*** api_token=***" in line


class _Opaque:
    """A value JSON cannot encode, whose text carries a secret."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def test_json_lines_redact_secrets_that_json_escapes() -> None:
    secret = 'js0n"sec\\ret'  # JSON writes both the quote and the backslash as escapes
    register_secret(secret)
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = logging.getLogger("ctibridge.test")
    try:
        log.warning(f"refused {secret}", extra={"detail": [secret], "opaque": _Opaque(f"x {secret}"),
                                                 "client_secret": "plain"})  # fmt: skip
        try:
            raise RuntimeError(f"bad {secret}")
        except RuntimeError:
            log.exception("failed")
    finally:
        configure_logging("info", "text")
    text = stream.getvalue()
    for leaked in (secret, json.dumps(secret)[1:-1], "plain"):
        assert leaked not in text, leaked
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["message"] == "refused ***" and first["detail"] == ["***"] and first["opaque"] == "x ***"
    assert first["client_secret"] == "***" and "RuntimeError: bad ***" in second["error"]
