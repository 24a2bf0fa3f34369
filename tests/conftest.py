"""Shared fixtures: the real pycti helper against the OpenCTI double (and the real broker for AMQP)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pycti import OpenCTIConnectorHelper
from pycti.connector import opencti_connector_helper as pycti_helper

from ctibridge.platform.opencti import OpenCTIPlatform, build_helper_config
from tests.doubles.opencti import BrokerSettings, OpenCTIDouble

TOKEN = "test-token-7d1e0c5a9b"
HEARTBEAT = 0.2
# pycti paces its watchdog and retry loops with time.sleep (5 s, 10 s); tests run them 5x faster.
PYCTI_PACING = 0.2
_PYCTI_ENV_PREFIXES = ("OPENCTI_", "CONNECTOR_", "MQ_", "LISTEN_PROTOCOL_API_", "S3_")


class _ScaledSleep:
    """The `time` module as pycti's helper module sees it, with `sleep` shortened."""

    def __init__(self, factor: float) -> None:
        self._factor = factor

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self._factor)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture(autouse=True)
def pycti_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep the host's OPENCTI_*/CONNECTOR_* variables out of pycti, speed up its pacing sleeps, restore
    the excepthook pycti replaces, turn pycti's SIGTERM (killProgramHook) into a test failure instead of
    the end of the run, and fail if a test leaves non-daemon threads that would hang pytest."""
    for name in list(os.environ):
        if name.startswith(_PYCTI_ENV_PREFIXES) or name in ("QUEUE_PROTOCOL", "HTTPS_CA_CERTIFICATES"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(pycti_helper, "time", _ScaledSleep(PYCTI_PACING))
    hook = sys.excepthook

    def killed(signum: int, frame: Any) -> None:
        pytest.fail("SIGTERM sent to the test process (pycti's killProgramHook was called)")

    previous_sigterm = signal.signal(signal.SIGTERM, killed)
    before = set(threading.enumerate())
    yield
    signal.signal(signal.SIGTERM, previous_sigterm)
    sys.excepthook = hook
    deadline = time.monotonic() + 10
    leftovers: list[threading.Thread] = []
    while time.monotonic() < deadline:
        leftovers = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
        if not leftovers:
            break
        time.sleep(0.05)
    assert not leftovers, f"threads left running: {leftovers}"


@pytest.fixture(scope="session")
def broker() -> BrokerSettings:
    """The RabbitMQ broker at 127.0.0.1:5672; skip where none answers (CI always has one)."""
    settings = BrokerSettings()
    try:
        socket.create_connection((settings.host, settings.port), timeout=1).close()
    except OSError:
        pytest.skip(f"needs RabbitMQ: nothing answers on {settings.host}:{settings.port} (CI always has one)")
    return settings


def _started_double(**options: Any) -> Iterator[OpenCTIDouble]:
    double = OpenCTIDouble(token=TOKEN, heartbeat_interval=HEARTBEAT, **options).start()
    try:
        yield double
    finally:
        double.stop()
    unknown = [f"{c.operation} ({c.field})" for c in double.unknown_operations]
    assert not unknown, f"pycti sent operations the double does not implement: {unknown}"


@pytest.fixture
def opencti() -> Iterator[OpenCTIDouble]:
    """The double, without broker declarations (the `api` queue protocol never touches RabbitMQ)."""
    yield from _started_double()


@pytest.fixture
def opencti_amqp(broker: BrokerSettings) -> Iterator[OpenCTIDouble]:
    """The double declaring the platform's exchanges and queues on the real broker."""
    yield from _started_double(broker=broker, declare_queues=True)


@pytest.fixture(params=["api", pytest.param("amqp", marks=pytest.mark.broker)])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def double(protocol: str, request: pytest.FixtureRequest) -> OpenCTIDouble:
    """The double matching the queue protocol under test."""
    return request.getfixturevalue("opencti_amqp" if protocol == "amqp" else "opencti")


Connect = Callable[..., OpenCTIPlatform]


@pytest.fixture
def connect(background: Callable[..., threading.Thread]) -> Iterator[Connect]:
    """Build a real `OpenCTIConnectorHelper` against a double and wrap it; everything is stopped after.

    Depends on `background` so platforms are stopped before its threads are joined."""
    platforms: list[OpenCTIPlatform] = []

    def make(
        target: OpenCTIDouble,
        *,
        connector_id: str | None = None,
        connector_type: str = "EXTERNAL_IMPORT",
        protocol: str = "api",
        platform_options: dict[str, Any] | None = None,
        **config: Any,
    ) -> OpenCTIPlatform:
        settings = build_helper_config(
            url=target.url,
            token=target.token,
            connector_id=connector_id or str(uuid.uuid4()),
            connector_type=connector_type,
            connector_name="ctibridge-test",
            queue_protocol=protocol,
            ssl_verify=False,
            **config,
        )
        known = settings["connector"]["id"] in target.connector_ids
        pings_before = target.connector(settings["connector"]["id"]).pings if known else 0
        helper = OpenCTIConnectorHelper(settings)
        options = {"stream_retry_delay": 0.2, **(platform_options or {})}
        platform = OpenCTIPlatform(helper, **options)
        platforms.append(platform)
        # PingAlive pings once right after start with the state it read then; let that ping land first,
        # or it can overwrite a state a test pushes right away (the state is re-pushed 40 s later).
        if isinstance(getattr(helper, "ping", None), pycti_helper.PingAlive):
            target.wait_for(
                lambda: target.connector(helper.connector_id).pings > pings_before, message="first ping"
            )
        return platform

    yield make
    for platform in platforms:
        platform.stop()


@pytest.fixture
def background() -> Iterator[Callable[..., threading.Thread]]:
    """Run a blocking call (listen_stream, listen_enrichment, schedule) in a thread; join it at the end."""
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(target: Callable[..., Any], *args: Any) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # surfaced in the test's teardown
                errors.append(exc)

        thread = threading.Thread(target=run, name=f"test-{getattr(target, '__name__', 'call')}")
        thread.start()
        threads.append(thread)
        return thread

    yield start
    for thread in threads:
        thread.join(timeout=15)
    assert not [t for t in threads if t.is_alive()], "a blocking platform call did not return after stop()"
    assert not errors, f"blocking platform calls failed: {errors!r}"
