"""Elastic Security Incidents end to end: the real elasticsearch-py and httpx against the Elastic double.

Delivery goes to a file platform here (what was sent is on disk to count); the OpenCTI path is
exercised with the real pycti helper in tests/connectors/test_elastic_incidents_opencti.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ctibridge.config.elastic import ElasticIncidentsSettings
from ctibridge.connectors.elastic_incidents import ElasticIncidentsConnector
from ctibridge.errors import DeliveryError, RemoteError
from ctibridge.platform.files import FilePlatform
from ctibridge.siem.elastic.client import AlertReader, KibanaCases, build_elasticsearch
from tests.doubles.elastic import ElasticDouble
from tests.fixtures.elastic_alerts import (
    alert_id,
    generate_alerts,
    generate_cases,
    load_cases_into,
    load_into,
)
from tests.support.stix_validation import assert_valid_bundle

INDEX = ".alerts-security.alerts-default"


@pytest.fixture
def elastic() -> Iterator[ElasticDouble]:
    with ElasticDouble() as double:
        yield double


def settings_for(elastic: ElasticDouble, **overrides: Any) -> ElasticIncidentsSettings:
    values: dict[str, Any] = {
        "url": elastic.es.url,
        "kibana_url": elastic.kibana.url,
        "api_key": elastic.api_key,
        "import_start_date": "2020-01-01",
        "page_size": 500,
        "import_cases": False,
        **overrides,
    }
    return ElasticIncidentsSettings(**values)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connector_for(
    elastic: ElasticDouble,
    platform: FilePlatform,
    *,
    attempts: int = 3,
    sleep: Sleeps | None = None,
    **overrides: Any,
) -> ElasticIncidentsConnector:
    settings = settings_for(elastic, **overrides)
    sleep = sleep if sleep is not None else Sleeps()
    reader = AlertReader(
        build_elasticsearch(settings),
        settings.alerts_index,
        page_size=settings.page_size,
        attempts=attempts,
        sleep=sleep,
    )
    cases = KibanaCases(settings, attempts=attempts, sleep=sleep) if settings.import_cases else None
    return ElasticIncidentsConnector(settings, platform, reader, cases, chunk_objects=20_000)


def delivered(directory: Path) -> list[dict[str, Any]]:
    objects = []
    for path in sorted(directory.glob("work-*.json")):
        objects.extend(json.loads(path.read_text())["objects"])
    return objects


def close_alert(elastic: ElasticDouble, doc: dict[str, Any], when: datetime) -> None:
    """An analyst closes the alert in Kibana at `when`."""
    changed = {
        **doc,
        "kibana.alert.workflow_status": "closed",
        "kibana.alert.workflow_status_updated_at": when.isoformat(),
    }
    load_into(elastic, INDEX, [changed])


def incident_alert_ids(objects: list[dict[str, Any]]) -> list[str]:
    return [
        ref["external_id"]
        for obj in objects
        if obj["type"] == "incident"
        for ref in obj.get("external_references", [])[:1]
    ]


def test_every_alert_arrives_once_over_many_pages(elastic: ElasticDouble, tmp_path: Path) -> None:
    docs = list(generate_alerts(25_000, seed=4))
    load_into(elastic, INDEX, docs, clone=False)
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    connector_for(elastic, platform, page_size=1000).process()

    objects = delivered(tmp_path)
    ids = incident_alert_ids(objects)
    assert len(ids) == 25_000 and set(ids) == {alert_id(d) for d in docs}
    assert len({o["id"] for o in objects if o["type"] == "incident"}) == 25_000, "distinct incident ids"
    assert elastic.es.count(r"/_search$") >= 25, "paged, not one big search"
    checkpoint = platform.get_state()["alerts_after"]
    assert len(checkpoint) == 2, (
        "only our sort keys: a PIT's implicit _shard_doc means nothing to the next PIT"
    )

    # A rerun finds nothing new and sends nothing.
    before = len(list(tmp_path.glob("work-*.json")))
    connector_for(elastic, platform, page_size=1000).process()
    assert len(list(tmp_path.glob("work-*.json"))) == before


def test_bundles_are_valid_stix(elastic: ElasticDouble, tmp_path: Path) -> None:
    load_into(elastic, INDEX, generate_alerts(300, seed=2))
    platform = FilePlatform(tmp_path, chunk_size=5000)
    connector_for(elastic, platform, page_size=100).process()
    for path in tmp_path.glob("work-*.json"):
        assert_valid_bundle(json.loads(path.read_text()))


class CrashingPlatform(FilePlatform):
    """Fails delivery of the n-th bundle, as a connector killed mid-run would."""

    def __init__(self, directory: Path, fail_on: int) -> None:
        super().__init__(directory, chunk_size=50_000)
        self.fail_on = fail_on
        self.sends = 0
        original = self.work

        def work(name: str) -> Any:
            manager = original(name)
            return _WrappedWork(manager, self)

        self.work = work  # type: ignore[method-assign]


class _WrappedWork:
    def __init__(self, manager: Any, platform: CrashingPlatform) -> None:
        self.manager, self.platform = manager, platform

    def __enter__(self) -> Any:
        inner = self.manager.__enter__()
        platform = self.platform
        send = inner.send

        def failing_send(objects: Any) -> int:
            platform.sends += 1
            if platform.sends == platform.fail_on:
                raise DeliveryError("broker went away")
            return send(objects)

        inner.send = failing_send
        return inner

    def __exit__(self, *exc: Any) -> Any:
        return self.manager.__exit__(*exc)


@pytest.mark.parametrize("fail_on", [1, 2, 5])
def test_interruption_after_any_page_resumes_without_loss(
    elastic: ElasticDouble, tmp_path: Path, fail_on: int
) -> None:
    docs = list(generate_alerts(2_000, seed=7))
    load_into(elastic, INDEX, docs)
    crashing = CrashingPlatform(tmp_path, fail_on)
    with pytest.raises(DeliveryError):
        connector_for(elastic, crashing, page_size=300).process()
    first_run = incident_alert_ids(delivered(tmp_path))
    assert len(first_run) == (fail_on - 1) * 300

    connector_for(elastic, FilePlatform(tmp_path, chunk_size=50_000), page_size=300).process()
    ids = incident_alert_ids(delivered(tmp_path))
    assert set(ids) == {alert_id(d) for d in docs}, "nothing lost"
    assert len(ids) - len(set(ids)) <= 300, "at most the page in flight is sent again"


def test_throttling_is_retried_honouring_retry_after(elastic: ElasticDouble, tmp_path: Path) -> None:
    load_into(elastic, INDEX, generate_alerts(600, seed=3))
    elastic.es.inject(429, path=r"^/_search$", times=2, retry_after=7)
    elastic.es.inject(503, path=r"^/_search$", times=1, retry_after=2)
    sleeps = Sleeps()
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    connector_for(elastic, platform, page_size=200, sleep=sleeps).process()
    assert sleeps[:3] == [7, 7, 2]
    assert len(set(incident_alert_ids(delivered(tmp_path)))) == 600


def test_a_run_that_gives_up_leaves_the_checkpoint(elastic: ElasticDouble, tmp_path: Path) -> None:
    load_into(elastic, INDEX, generate_alerts(900, seed=5))
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    connector_for(elastic, platform, page_size=300).process()
    checkpoint = platform.get_state()

    load_into(elastic, INDEX, generate_alerts(300, seed=6, start=datetime(2025, 6, 1, tzinfo=UTC)))
    elastic.es.inject(503, path=r"^/_search$", times=None)
    with pytest.raises(RemoteError):
        connector_for(elastic, platform, page_size=300, attempts=2).process()
    assert platform.get_state() == checkpoint


def test_status_and_tag_filters_are_applied_in_the_query(elastic: ElasticDouble, tmp_path: Path) -> None:
    docs = list(generate_alerts(1_000, seed=8))
    load_into(elastic, INDEX, docs)
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    connector_for(elastic, platform, alert_statuses="closed").process()
    expected = {alert_id(d) for d in docs if d.get("kibana.alert.workflow_status") == "closed"}
    assert expected and set(incident_alert_ids(delivered(tmp_path))) == expected
    body = elastic.es.requests_to(r"^/_search$")[0].json
    assert {"terms": {"kibana.alert.workflow_status": ["closed"]}} in body["query"]["bool"]["filter"]


def test_status_changes_are_sent_again(elastic: ElasticDouble, tmp_path: Path) -> None:
    docs = list(generate_alerts(50, seed=9))
    load_into(elastic, INDEX, docs)
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    clock = iter([datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 2, tzinfo=UTC)])
    connector = connector_for(elastic, platform)
    connector.now = lambda: next(clock)
    connector.process()
    target = docs[0]
    changed = {
        **target,
        "kibana.alert.workflow_status": "closed",
        "kibana.alert.workflow_status_updated_at": "2025-06-01T12:00:00.000Z",
    }
    load_into(elastic, INDEX, [changed])
    for path in tmp_path.glob("work-*.json"):
        path.unlink()
    connector.process()
    objects = delivered(tmp_path)
    assert incident_alert_ids(objects) == [alert_id(target)]
    incident = next(o for o in objects if o["type"] == "incident")
    assert "workflow status closed" in incident["description"]


def test_cases_with_attached_alerts(elastic: ElasticDouble, tmp_path: Path) -> None:
    docs = list(generate_alerts(200, seed=10))
    load_into(elastic, INDEX, docs)
    cases = generate_cases(5, alerts=docs, seed=10)
    load_cases_into(elastic, cases)
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    connector_for(elastic, platform, import_alerts=False, import_cases=True).process()
    objects = delivered(tmp_path)
    case_objects = [o for o in objects if o["type"] == "case-incident"]
    assert len(case_objects) == 5
    assert all(r.headers.get("kbn-xsrf") for r in elastic.kibana.requests_to(r"/api/cases"))
    assert platform.get_state().get("cases_updated_at")
    # Rerun: nothing updated since the checkpoint, nothing sent.
    for path in tmp_path.glob("work-*.json"):
        path.unlink()
    connector_for(elastic, platform, import_alerts=False, import_cases=True).process()
    assert not [o for o in delivered(tmp_path) if o["type"] == "case-incident"]


def test_a_new_case_never_updated_is_imported_after_older_updated_ones(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    """Kibana leaves `updated_at` null until a case is first changed, and sorts nulls last: a case opened
    after the checkpoint and never touched must not hide behind an older updated one."""
    touched, pristine = generate_cases(2, seed=3)[:2]
    assert touched["updated_at"] and pristine["updated_at"] is None
    load_cases_into(elastic, [touched])
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    connector_for(elastic, platform, import_alerts=False, import_cases=True).process()
    assert platform.get_state()["cases_updated_at"]
    for path in tmp_path.glob("work-*.json"):
        path.unlink()
    later = datetime.fromisoformat(touched["updated_at"].replace("Z", "+00:00")).replace(year=2031)
    opened = {**pristine, "created_at": later.isoformat().replace("+00:00", "Z")}
    load_cases_into(elastic, [opened])
    connector_for(elastic, platform, import_alerts=False, import_cases=True).process()
    names = [o["name"] for o in delivered(tmp_path) if o["type"] == "case-incident"]
    assert names == [opened["title"]]
    assert platform.get_state()["cases_updated_at"].startswith("2031-")
    # And the next run sends neither again.
    for path in tmp_path.glob("work-*.json"):
        path.unlink()
    connector_for(elastic, platform, import_alerts=False, import_cases=True).process()
    assert not [o for o in delivered(tmp_path) if o["type"] == "case-incident"]


def test_cli_dry_run(elastic: ElasticDouble, tmp_path: Path) -> None:
    from tests.test_cli import ctibridge

    load_into(elastic, INDEX, generate_alerts(120, seed=12))
    env = {
        "ELASTIC_SECURITY_URL": elastic.es.url,
        "ELASTIC_SECURITY_KIBANA_URL": elastic.kibana.url,
        "ELASTIC_SECURITY_API_KEY": elastic.api_key,
        "ELASTIC_SECURITY_IMPORT_START_DATE": "2020-01-01",
    }
    result = ctibridge("run", "elastic-incidents", "--dry-run", str(tmp_path / "out"), env=env)
    assert result.returncode == 0, result.stderr
    assert len(set(incident_alert_ids(delivered(tmp_path / "out")))) == 120
    assert json.loads((tmp_path / "out" / "state.json").read_text())["alerts_after"]
    assert elastic.api_key not in result.stderr


def test_kibana_throttling_is_retried_honouring_retry_after(elastic: ElasticDouble, tmp_path: Path) -> None:
    docs = list(generate_alerts(60, seed=13))
    load_into(elastic, INDEX, docs)
    load_cases_into(elastic, generate_cases(3, alerts=docs, seed=13))
    elastic.kibana.inject(429, path=r"/api/cases/_find$", times=2, retry_after=4)
    sleeps = Sleeps()
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    connector_for(elastic, platform, sleep=sleeps, import_alerts=False, import_cases=True).process()
    assert sleeps == [4, 4]
    assert len([o for o in delivered(tmp_path) if o["type"] == "case-incident"]) == 3


def test_kibana_client_errors_are_not_retried(elastic: ElasticDouble, tmp_path: Path) -> None:
    elastic.kibana.inject(400, path=r"/api/cases/_find$", times=None)
    sleeps = Sleeps()
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    with pytest.raises(RemoteError) as info:
        connector_for(elastic, platform, sleep=sleeps, import_alerts=False, import_cases=True).process()
    assert info.value.status == 400 and sleeps == []
    assert "cases_updated_at" not in platform.get_state()


def _attached(cases: list[dict[str, Any]]) -> set[str]:
    from ctibridge.siem.elastic.cases import alert_ids_of

    return {alert_id for case in cases for alert_id, _ in alert_ids_of(case)}


def _case_refs_to_incidents(objects: list[dict[str, Any]]) -> set[str]:
    """Alert uuids of the incidents the delivered case-incidents point at."""
    incidents = {o["id"]: o for o in objects if o["type"] == "incident"}
    return {
        incidents[ref]["external_references"][0]["external_id"]
        for case in objects
        if case["type"] == "case-incident"
        for ref in case["object_refs"]
        if ref in incidents
    }


def test_attached_alerts_are_fetched_with_mget_from_their_index(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    docs = list(generate_alerts(200, seed=21))
    load_into(elastic, INDEX, docs)
    cases = generate_cases(6, alerts=docs, seed=21)
    attached = _attached(cases)
    assert attached, "the fixture attaches alerts to cases"
    load_cases_into(elastic, cases)
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    connector_for(elastic, platform, import_alerts=False, import_cases=True).process()

    objects = delivered(tmp_path)
    assert_valid_bundle(
        {"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": objects}
    )
    assert _case_refs_to_incidents(objects) == attached, "every attached alert became a referenced incident"
    gets = elastic.es.requests_to(r"/_mget$")
    assert gets, "attached alerts come from _mget"
    requested = {(doc["_index"], doc["_id"]) for request in gets for doc in request.json["docs"]}
    assert {doc_id for _, doc_id in requested} == attached
    assert {index for index, _ in requested} == {".internal.alerts-security.alerts-default-000001"}
    searches = [r.json for r in elastic.es.requests_to(r"/_search$") if r.json]
    assert not [body for body in searches if "ids" in body.get("query", {})], "no ids search was needed"


def test_attached_alerts_without_a_usable_index_fall_back_to_an_ids_search(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    docs = list(generate_alerts(120, seed=22))
    load_into(elastic, INDEX, docs)
    cases = generate_cases(4, alerts=docs, seed=22)
    # One attachment without an index, one naming an index that no longer exists: neither can be a get.
    alert_comments = [c for case in cases for c in case.get("comments", []) if c.get("type") == "alert"]
    assert len(alert_comments) >= 2
    alert_comments[0]["index"] = None
    alert_comments[1]["index"] = ".internal.alerts-security.alerts-default-000042"
    fallback = {
        str(i)
        for c in alert_comments[:2]
        for i in ([c["alertId"]] if isinstance(c["alertId"], str) else c["alertId"])
    }
    load_cases_into(elastic, cases)
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    connector_for(elastic, platform, import_alerts=False, import_cases=True).process()

    objects = delivered(tmp_path)
    assert _case_refs_to_incidents(objects) == _attached(cases), "no attached alert lost"
    searched = {
        value
        for request in elastic.es.requests_to(r"/_search$")
        if request.json and "ids" in request.json.get("query", {})
        for value in request.json["query"]["ids"]["values"]
    }
    assert searched == fallback


def test_mutual_tls_client_certificate_is_used_by_the_connector(tmp_path: Path) -> None:
    """ELASTIC_SECURITY_CLIENT_CERT/CLIENT_KEY/CA_CERT reach the Elasticsearch client; without a client
    certificate the server refuses the handshake and the run fails with a clear error, state untouched."""
    with ElasticDouble(tls=True, require_client_cert=True) as double:
        assert double.tls is not None
        docs = list(generate_alerts(150, seed=23))
        load_into(double, INDEX, docs)
        env = {
            "ELASTIC_SECURITY_URL": double.es.url,
            "ELASTIC_SECURITY_KIBANA_URL": double.kibana.url,
            "ELASTIC_SECURITY_API_KEY": double.api_key,
            "ELASTIC_SECURITY_IMPORT_START_DATE": "2020-01-01",
            "ELASTIC_SECURITY_IMPORT_CASES": "false",
            "ELASTIC_SECURITY_CA_CERT": str(double.tls.ca_path),
            "ELASTIC_SECURITY_CLIENT_CERT": str(double.tls.client_cert_path),
            "ELASTIC_SECURITY_CLIENT_KEY": str(double.tls.client_key_path),
        }
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            settings = ElasticIncidentsSettings()
            assert settings.url.startswith("https://")
            assert (settings.client_cert, settings.client_key) == (
                str(double.tls.client_cert_path),
                str(double.tls.client_key_path),
            )
            without_cert = settings.model_copy(update={"client_cert": None, "client_key": None})

        platform = FilePlatform(tmp_path / "mtls", chunk_size=50_000)
        reader = AlertReader(build_elasticsearch(settings), settings.alerts_index, page_size=100, attempts=1)
        ElasticIncidentsConnector(settings, platform, reader, None).process()
        assert set(incident_alert_ids(delivered(tmp_path / "mtls"))) == {alert_id(d) for d in docs}
        assert platform.get_state()["alerts_after"]

        refused = FilePlatform(tmp_path / "refused", chunk_size=50_000)
        reader = AlertReader(build_elasticsearch(without_cert), settings.alerts_index, attempts=1)
        with pytest.raises(RemoteError) as info:
            ElasticIncidentsConnector(without_cert, refused, reader, None).process()
        message = str(info.value)
        assert "elasticsearch" in message and "unreachable" in message, message
        assert double.api_key not in message
        assert not refused.get_state() and not list((tmp_path / "refused").glob("work-*.json"))


def test_attached_alerts_come_from_the_case_where_kibana_lacks_the_alerts_endpoint(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    docs = list(generate_alerts(100, seed=24))
    load_into(elastic, INDEX, docs)
    cases = generate_cases(5, alerts=docs, seed=24)
    load_cases_into(elastic, cases)
    elastic.kibana.inject(404, path=r"^/api/cases/[^/]+/alerts$", times=None)
    platform = FilePlatform(tmp_path, chunk_size=50_000)
    connector_for(elastic, platform, import_alerts=False, import_cases=True).process()
    assert elastic.kibana.count(r"^/api/cases/[^/_]+$", method="GET"), "read the case itself"
    assert _attached(cases) and _case_refs_to_incidents(delivered(tmp_path)) == _attached(cases)


def test_a_dry_run_sends_no_status_and_says_nothing_of_workflows(
    elastic: ElasticDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load_into(elastic, INDEX, generate_alerts(20, seed=14))
    connector_for(elastic, FilePlatform(tmp_path)).process()
    incidents = [o for o in delivered(tmp_path) if o["type"] == "incident"]
    assert len(incidents) == 20 and not any("x_opencti_workflow_id" in o for o in incidents)
    assert "workflow" not in caplog.text


def test_alerts_still_settling_are_left_for_the_next_run(elastic: ElasticDouble, tmp_path: Path) -> None:
    def stamp(doc: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(doc["@timestamp"].replace("Z", "+00:00"))

    docs = sorted(generate_alerts(60, seed=15), key=stamp)
    late = docs.pop()  # stamped last, but searchable only after the first run (a slow bulk write)
    load_into(elastic, INDEX, docs)
    platform = FilePlatform(tmp_path)
    clock = iter([stamp(late) + timedelta(seconds=30), stamp(late) + timedelta(days=1)])
    connector = connector_for(elastic, platform, settle_seconds=1800)
    connector.now = lambda: next(clock)

    connector.process()
    horizon = stamp(late) + timedelta(seconds=30 - 1800)
    first = incident_alert_ids(delivered(tmp_path))
    assert set(first) == {alert_id(d) for d in docs if stamp(d) < horizon}
    assert 0 < len(first) < len(docs)  # the newest half hour was left alone

    load_into(elastic, INDEX, [late])
    connector.process()
    every = incident_alert_ids(delivered(tmp_path))  # status re-sends of the second run included
    assert set(every) == {alert_id(d) for d in [*docs, late]}, "the late alert arrived too"


def test_a_status_change_still_settling_is_left_for_the_next_run(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    docs = list(generate_alerts(30, seed=16))
    load_into(elastic, INDEX, docs)
    platform = FilePlatform(tmp_path)
    day = datetime(2025, 6, 1, tzinfo=UTC)
    clock = iter([day, day + timedelta(hours=1), day + timedelta(hours=2)])
    connector = connector_for(elastic, platform, settle_seconds=600)
    connector.now = lambda: next(clock)
    connector.process()
    target = docs[0]
    # Changed 5 minutes before the second run: inside its settle window, so left for the third.
    close_alert(elastic, target, day + timedelta(minutes=55))
    for run in (2, 3):
        for path in tmp_path.glob("work-*.json"):
            path.unlink()
        connector.process()
        sent = incident_alert_ids(delivered(tmp_path))
        assert sent == ([] if run == 2 else [alert_id(target)]), run


def test_a_point_in_time_expiring_during_delivery_is_reopened_without_loss(
    elastic: ElasticDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = list(generate_alerts(1_600, seed=17))
    load_into(elastic, INDEX, docs)
    connector = connector_for(elastic, FilePlatform(tmp_path, chunk_size=50_000))
    deliver = connector._deliver

    def slow_delivery(work: Any, groups: Any) -> int:
        sent = deliver(work, groups)
        elastic.es.expire_pits()  # the page took longer to deliver than the keep-alive
        return sent

    connector._deliver = slow_delivery  # type: ignore[method-assign]
    connector.process()
    received = incident_alert_ids(delivered(tmp_path))
    assert len(received) == 1_600 and set(received) == {alert_id(d) for d in docs}
    assert caplog.text.count("point in time expired") == 3  # after each of the first three pages


def test_status_changes_cover_every_imported_alert_after_the_start_date_moves(
    elastic: ElasticDouble, tmp_path: Path
) -> None:
    docs = sorted(generate_alerts(30, seed=18), key=lambda d: d["@timestamp"])
    load_into(elastic, INDEX, docs)
    platform = FilePlatform(tmp_path)
    day = datetime(2025, 6, 1, tzinfo=UTC)
    first = connector_for(elastic, platform, import_start_date="2025-01-01")
    first.now = lambda: day
    first.process()
    # A restart whose start date lies after the oldest alerts (the default, 7 days back, moves so).
    target = docs[0]
    close_alert(elastic, target, day + timedelta(hours=1))
    for path in tmp_path.glob("work-*.json"):
        path.unlink()
    restarted = connector_for(elastic, platform, import_start_date=docs[-1]["@timestamp"])
    restarted.now = lambda: day + timedelta(days=1)
    restarted.process()
    assert incident_alert_ids(delivered(tmp_path)) == [alert_id(target)]
