"""Sentinel Incidents end to end: the real msal and httpx against the Graph double, bundles to files.

The OpenCTI path (real pycti helper) is in test_sentinel_incidents_opencti.py. Retry-After waits are
recorded by an injected sleep instead of being waited out, except where the double's rate limit must
really free up (then a scaled-down real sleep).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ctibridge.config.sentinel import SentinelIncidentsSettings
from ctibridge.connectors.sentinel_incidents import SentinelIncidentsConnector
from ctibridge.errors import DeliveryError, RemoteError
from ctibridge.platform.files import FilePlatform
from ctibridge.siem.microsoft.client import GraphIncidents, graph_ticks
from tests.doubles.graph import GraphDouble
from tests.fixtures.graph_incidents import generate_incidents, load_into
from tests.siem.microsoft.test_graph_client import Sleeps, settings_for
from tests.support.stix_validation import assert_valid_bundle
from tests.test_cli import ctibridge


@pytest.fixture
def graph() -> Iterator[GraphDouble]:
    with GraphDouble() as double:
        yield double


class HookedPlatform(FilePlatform):
    """A file platform that runs `after_send(n)` after the n-th delivered bundle, or fails the n-th."""

    def __init__(
        self, directory: Path, *, fail_on: int | None = None, after_send: Callable[[int], None] | None = None
    ) -> None:
        super().__init__(directory, chunk_size=100_000)
        self.fail_on, self.after_send, self.sends = fail_on, after_send, 0

    def work(self, name: str) -> Any:
        manager = super().work(name)
        platform = self

        class Hooked:
            def __enter__(self) -> Any:
                inner = manager.__enter__()
                send = inner.send

                def hooked_send(objects: Any) -> int:
                    platform.sends += 1
                    if platform.sends == platform.fail_on:
                        raise DeliveryError("broker went away")
                    sent = send(objects)
                    if platform.after_send:
                        platform.after_send(platform.sends)
                    return sent

                inner.send = hooked_send
                return inner

            def __exit__(self, *exc: Any) -> Any:
                return manager.__exit__(*exc)

        return Hooked()


def connector_for(
    graph: GraphDouble,
    platform: FilePlatform,
    *,
    sleep: Callable[[float], None] | None = None,
    **overrides: Any,
) -> SentinelIncidentsConnector:
    settings: SentinelIncidentsSettings = settings_for(graph, **overrides)
    client = GraphIncidents(settings, sleep=sleep if sleep is not None else Sleeps())
    return SentinelIncidentsConnector(settings, platform, client, chunk_objects=100_000)


def bundles(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(directory.glob("work-*.json"))]


def case_ids(directory: Path) -> list[str]:
    return [
        obj["external_references"][0]["external_id"]
        for bundle in bundles(directory)
        for obj in bundle["objects"]
        if obj["type"] == "case-incident"
    ]


def importable(incidents: list[dict[str, Any]]) -> set[str]:
    """Redirected incidents are merged into another one and not imported."""
    return {str(i["id"]) for i in incidents if str(i["status"]).lower() != "redirected"}


def test_incidents_over_many_pages_arrive_once_each(graph: GraphDouble, tmp_path: Path) -> None:
    """800 here; the 2,000 of the issue go through the OpenCTI double in the _opencti module."""
    incidents = generate_incidents(800, seed=41, alerts_per_incident=1, evidence_per_alert=1)
    load_into(graph, incidents)
    platform = FilePlatform(tmp_path, chunk_size=100_000)
    connector_for(graph, platform).process()

    ids = case_ids(tmp_path)
    assert len(ids) == len(set(ids)) and set(ids) == importable(incidents)
    assert len(graph.requests_to("incidents")) >= 800 // 50, "paged, 50 at a time"
    assert len(graph.requests_to("token")) == 1
    newest = max(incidents, key=lambda i: graph_ticks(i["lastUpdateDateTime"]))["lastUpdateDateTime"]
    state = platform.get_state()
    assert state["last_update"] == newest, "Graph's own text, all 7 fractional digits"
    # Validation costs ~5 ms an object; the first page's bundle stands for the rest here, every bundle
    # is validated in test_bundles_are_valid_stix.
    assert_valid_bundle(bundles(tmp_path)[0])

    before = len(list(tmp_path.glob("work-*.json")))
    connector_for(graph, platform).process()
    assert len(list(tmp_path.glob("work-*.json"))) == before, "a rerun sends nothing"
    assert platform.get_state() == state


def test_bundles_are_valid_stix(graph: GraphDouble, tmp_path: Path) -> None:
    incidents = generate_incidents(9, seed=42, alerts_per_incident=1, evidence_per_alert=18, pascal_ratio=0.5)
    load_into(graph, incidents)
    connector_for(graph, FilePlatform(tmp_path), page_size=3, create_indicators=True).process()
    found = bundles(tmp_path)
    assert len(found) >= 3
    for bundle in found:
        assert_valid_bundle(bundle)
    types = {o["type"] for b in found for o in b["objects"]}
    assert {"case-incident", "incident", "indicator", "malware", "note", "attack-pattern"} <= types


@pytest.mark.parametrize("fail_on", [1, 2, 5])
def test_interruption_resumes_with_none_lost_and_none_repeated(
    graph: GraphDouble, tmp_path: Path, fail_on: int
) -> None:
    incidents = generate_incidents(600, seed=43, alerts_per_incident=1, evidence_per_alert=1)
    load_into(graph, incidents)
    with pytest.raises(DeliveryError):
        connector_for(graph, HookedPlatform(tmp_path, fail_on=fail_on)).process()
    first_run = case_ids(tmp_path)
    assert len(first_run) < 50 * (fail_on - 1) + 1 and (fail_on == 1 or first_run)

    connector_for(graph, FilePlatform(tmp_path, chunk_size=100_000)).process()
    ids = case_ids(tmp_path)
    assert set(ids) == importable(incidents), "nothing lost"
    assert len(ids) == len(set(ids)), "nothing sent twice: the checkpoint remembers ids at its timestamp"


def test_a_throttled_run_slows_down_instead_of_failing(graph: GraphDouble, tmp_path: Path) -> None:
    incidents = generate_incidents(250, seed=44, alerts_per_incident=1, evidence_per_alert=1)
    load_into(graph, incidents)
    # Graph-like sliding window: 2 requests per 0.5 s, Retry-After 5 s. The injected sleep records the
    # 5 s and waits a tenth of it, which frees the window as a real 5 s wait would.
    graph.throttle("incidents", 2, 0.5, retry_after=5)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds / 10)

    connector_for(graph, FilePlatform(tmp_path, chunk_size=100_000), sleep=sleep).process()
    assert set(case_ids(tmp_path)) == importable(incidents)
    throttled = [r for r in graph.requests_to("incidents") if r.status == 429]
    assert throttled and len(waits) == len(throttled) and set(waits) == {5}


def test_401_mid_run_reauthenticates_once(graph: GraphDouble, tmp_path: Path) -> None:
    incidents = generate_incidents(300, seed=45, alerts_per_incident=1, evidence_per_alert=1)
    load_into(graph, incidents)
    platform = HookedPlatform(tmp_path, after_send=lambda n: graph.expire_tokens() if n == 2 else None)
    connector = connector_for(graph, platform)
    connector.process()
    assert set(case_ids(tmp_path)) == importable(incidents)
    assert connector.client.reauthentications == 1
    assert [r.status for r in graph.requests_to("token")] == [200, 200]
    assert [r.status for r in graph.requests_to("incidents")].count(401) == 1


def test_incidents_sharing_one_update_time_across_pages(graph: GraphDouble, tmp_path: Path) -> None:
    incidents = generate_incidents(180, seed=46, alerts_per_incident=1, evidence_per_alert=1)
    stamp = incidents[10]["lastUpdateDateTime"]
    for incident in incidents[10:140]:  # 130 incidents, more than two pages, at one timestamp
        incident["lastUpdateDateTime"] = stamp
    load_into(graph, incidents)
    platform = FilePlatform(tmp_path, chunk_size=100_000)
    connector_for(graph, platform).process()
    ids = case_ids(tmp_path)
    assert set(ids) == importable(incidents) and len(ids) == len(set(ids))
    assert any("$skip" in r.params for r in graph.requests_to("incidents")), "nextLink followed in the tie"

    # A checkpoint inside the tie: a rerun sees the 130 again through `ge` and sends none of them.
    platform.set_state(
        {"last_update": stamp, "ids_at_last_update": sorted(str(i["id"]) for i in incidents[10:140])}
    )
    for path in tmp_path.glob("work-*.json"):
        path.unlink()
    connector_for(graph, platform).process()
    assert set(case_ids(tmp_path)) == importable(incidents[140:])


def test_an_incident_updated_during_the_run_is_not_stepped_over(graph: GraphDouble, tmp_path: Path) -> None:
    """An update moves an incident behind the others, which shifts every `$skip` offset by one."""
    incidents = generate_incidents(300, seed=47, alerts_per_incident=1, evidence_per_alert=1)
    load_into(graph, incidents)
    first_page = sorted(incidents, key=lambda i: graph_ticks(i["lastUpdateDateTime"]))[:50]
    moved = next(i for i in first_page if str(i["status"]).lower() != "redirected")

    def update(n: int) -> None:
        if n == 1:
            graph.update_incident(str(moved["id"]), severity="high")

    connector_for(graph, HookedPlatform(tmp_path, after_send=update)).process()
    ids = case_ids(tmp_path)
    assert set(ids) == importable(incidents)
    assert ids.count(str(moved["id"])) == 2, "sent again with its update"


def test_target_product_keeps_only_that_products_alerts(graph: GraphDouble, tmp_path: Path) -> None:
    incidents = generate_incidents(200, seed=48, alerts_per_incident=2, evidence_per_alert=1)
    load_into(graph, incidents)
    connector_for(
        graph, FilePlatform(tmp_path, chunk_size=100_000), target_product="Microsoft Defender ATP"
    ).process()
    expected = {
        str(i["id"])
        for i in incidents
        if str(i["status"]).lower() != "redirected"
        and any(a["productName"] == "Microsoft Defender for Endpoint" for a in i["alerts"])
    }
    assert expected and set(case_ids(tmp_path)) == expected
    sources = {o["source"] for b in bundles(tmp_path) for o in b["objects"] if o["type"] == "incident"}
    assert sources == {"Microsoft Defender for Endpoint"}


def test_import_start_date_limits_the_first_run(graph: GraphDouble, tmp_path: Path) -> None:
    incidents = generate_incidents(100, seed=49, alerts_per_incident=1, evidence_per_alert=1)
    load_into(graph, incidents)
    newest_first = sorted(incidents, key=lambda i: graph_ticks(i["lastUpdateDateTime"]))
    cut = newest_first[60]["lastUpdateDateTime"][:19] + "Z"  # as a user writes it
    connector_for(graph, FilePlatform(tmp_path), import_start_date=cut).process()
    expected = {str(i["id"]) for i in incidents if graph_ticks(i["lastUpdateDateTime"]) >= graph_ticks(cut)}
    assert set(case_ids(tmp_path)) == expected & importable(incidents)


# ------------------------------------------------------------------------------------------- CLI


def _env(graph: GraphDouble, **extra: str) -> dict[str, str]:
    return {
        "SENTINEL_INCIDENTS_TENANT_ID": graph.tenant,
        "SENTINEL_INCIDENTS_CLIENT_ID": graph.client_id,
        "SENTINEL_INCIDENTS_CLIENT_SECRET": graph.client_secret,
        "SENTINEL_INCIDENTS_LOGIN_URL": graph.login_url,
        "SENTINEL_INCIDENTS_API_BASE_URL": graph.graph_url,
        "SENTINEL_INCIDENTS_CA_CERT": str(graph.ca_path),
        "SENTINEL_INCIDENTS_IMPORT_START_DATE": "2024-01-01",
        **extra,
    }


def test_cli_run_dry_run(graph: GraphDouble, tmp_path: Path) -> None:
    incidents = generate_incidents(80, seed=50, alerts_per_incident=1, evidence_per_alert=1)
    load_into(graph, incidents)
    env = _env(graph, SENTINEL_INCIDENTS_TARGET_PRODUCT="Azure Sentinel", CONNECTOR_LOG_LEVEL="debug")
    result = ctibridge("run", "sentinel-incidents", "--dry-run", str(tmp_path / "out"), env=env)
    assert result.returncode == 0, result.stderr
    expected = {
        str(i["id"])
        for i in incidents
        if str(i["status"]).lower() != "redirected"
        and any(a["serviceSource"].lower() == "microsoftsentinel" for a in i["alerts"])
    }
    assert expected and set(case_ids(tmp_path / "out")) == expected
    assert json.loads((tmp_path / "out" / "state.json").read_text())["last_update"]
    assert graph.client_secret not in result.stderr + result.stdout


def test_cli_run_with_a_wrong_secret_is_a_configuration_error(graph: GraphDouble, tmp_path: Path) -> None:
    env = _env(graph, SENTINEL_INCIDENTS_CLIENT_SECRET="n0t-the-s3cret")
    result = ctibridge("run", "sentinel-incidents", "--dry-run", str(tmp_path / "out"), env=env)
    assert result.returncode == 2, result.stderr
    assert "SENTINEL_INCIDENTS_CLIENT_SECRET" in result.stderr and "Traceback" not in result.stderr
    assert "n0t-the-s3cret" not in result.stderr


@pytest.mark.parametrize("shape", ["list-response", "one-incident"])
def test_cli_convert_graph_incidents(tmp_path: Path, shape: str) -> None:
    incidents = generate_incidents(5, seed=51, alerts_per_incident=1, evidence_per_alert=18)
    kept = [i for i in incidents if str(i["status"]).lower() != "redirected"]
    document: Any = {"@odata.context": "x", "value": incidents} if shape == "list-response" else kept[0]
    source = tmp_path / "incidents.json"
    source.write_text(json.dumps(document))
    out = tmp_path / "bundle.json"
    result = ctibridge(
        "convert", "graph-incidents", str(source), "-o", str(out), "--tlp", "TLP:GREEN",
        env={"SENTINEL_INCIDENTS_CREATE_INDICATORS": "true"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    bundle = json.loads(out.read_text())
    assert_valid_bundle(bundle)
    cases = [o for o in bundle["objects"] if o["type"] == "case-incident"]
    expected = {str(i["id"]) for i in kept} if shape == "list-response" else {str(kept[0]["id"])}
    assert {c["external_references"][0]["external_id"] for c in cases} == expected
    assert any(o["type"] == "indicator" for o in bundle["objects"])
    assert "graph-incidents: read" in result.stdout


def test_cli_convert_to_stdout_skips_a_broken_record(tmp_path: Path) -> None:
    incidents = generate_incidents(3, seed=52, alerts_per_incident=1, evidence_per_alert=3)
    incidents = [i for i in incidents if str(i["status"]).lower() != "redirected"]
    lines = [json.dumps(i) for i in incidents] + [json.dumps({"id": "9", "createdDateTime": "never"})]
    result = ctibridge("convert", "graph-incidents", "-", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    bundle = json.loads(result.stdout)
    assert_valid_bundle(bundle)
    assert len([o for o in bundle["objects"] if o["type"] == "case-incident"]) == len(incidents)
    assert "skipped 1" in result.stderr


class ScriptedGraph:
    """Pages as a Graph that ignored `$orderby` would serve them (newest first)."""

    def __init__(self, pages: list[list[dict[str, Any]]]) -> None:
        self.pages = pages

    def first_page(self, since: str) -> Any:
        from ctibridge.siem.microsoft.client import IncidentPage

        return IncidentPage(self.pages[0], "next" if len(self.pages) > 1 else None)

    def follow(self, link: str) -> Any:
        raise AssertionError("not reached")


def test_an_answer_out_of_update_order_stops_before_the_checkpoint_moves(tmp_path: Path) -> None:
    incidents = generate_incidents(6, seed=53, alerts_per_incident=1, evidence_per_alert=1)
    newest_first = sorted(incidents, key=lambda i: graph_ticks(i["lastUpdateDateTime"]), reverse=True)
    settings = SentinelIncidentsSettings(tenant_id="t", client_id="c", client_secret="s", target_product="")
    platform = FilePlatform(tmp_path)
    connector = SentinelIncidentsConnector(settings, platform, ScriptedGraph([newest_first]))  # type: ignore[arg-type]
    with pytest.raises(RemoteError, match="not in lastUpdateDateTime order"):
        connector.process()
    assert platform.get_state() == {}


def test_client_certificate_from_settings_passes_mtls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GraphDouble(require_client_cert=True) as graph:
        incidents = generate_incidents(60, seed=48, alerts_per_incident=1, evidence_per_alert=1)
        load_into(graph, incidents)
        assert graph.client_cert_path and graph.client_key_path
        monkeypatch.setenv("SENTINEL_INCIDENTS_CLIENT_CERT", graph.client_cert_path)
        monkeypatch.setenv("SENTINEL_INCIDENTS_CLIENT_KEY", graph.client_key_path)
        connector_for(graph, FilePlatform(tmp_path / "with", chunk_size=100_000)).process()
        assert set(case_ids(tmp_path / "with")) == importable(incidents)
        assert {r.route for r in graph.requests} >= {"openid", "token", "incidents"}

        monkeypatch.delenv("SENTINEL_INCIDENTS_CLIENT_CERT")
        monkeypatch.delenv("SENTINEL_INCIDENTS_CLIENT_KEY")
        served = len(graph.requests)
        sleeps = Sleeps()
        without = FilePlatform(tmp_path / "without", chunk_size=100_000)
        with pytest.raises(
            RemoteError, match=r"TLS handshake failed .*SENTINEL_INCIDENTS_CLIENT_CERT"
        ) as err:
            connector_for(graph, without, sleep=sleeps).process()
        assert err.value.service == "microsoft-login" and sleeps == [], "a refused handshake is not retried"
        assert len(graph.requests) == served, "the double refused the connection before any request"
        assert not case_ids(tmp_path / "without") and without.get_state() == {}
