"""Elastic Security Intel: OpenCTI's live stream into ECS threat-indicator documents and Kibana rules.

Stream event -> `IndicatorDocuments.plan` (documents, or why there must be none) + `RuleBuilder.rule_for`
-> `StreamBatcher` (bulk batches, dead letters, position saved after the batch landed). A background
thread flushes a batch when the stream goes quiet and runs the maintenance job: expired documents are
swept and old ones re-stamped so Elastic's 30-day indicator-match window keeps seeing live indicators.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from ctibridge.config.elastic import ElasticIntelConfig, ElasticIntelSettings
from ctibridge.config.types import parse_datetime
from ctibridge.errors import CtiBridgeError, RemoteError
from ctibridge.platform.base import Platform, StreamEvent
from ctibridge.siem.elastic.client import build_elasticsearch, build_kibana_client
from ctibridge.siem.elastic.indicators import HANDLED_TYPES, IndicatorDocuments, document_id
from ctibridge.siem.elastic.intel_writer import (
    DeadLetters,
    Failure,
    IntelIndex,
    Origin,
    StopRequested,
    StreamBatcher,
)
from ctibridge.siem.elastic.kibana_rules import KibanaRules
from ctibridge.siem.elastic.rules import INDICATOR_MATCH_PREFIX, RuleBuilder, rule_id_for

log = logging.getLogger(__name__)

PATTERN_TYPES = ("kql", "lucene", "eql", "esql")
RESTAMP_AFTER = timedelta(days=7)  # well inside the 30 days Elastic's indicator-match rules look back


class ElasticIntelConnector:
    def __init__(
        self,
        settings: ElasticIntelSettings,
        platform: Platform,
        index: IntelIndex,
        *,
        rules: KibanaRules | None = None,
        rule_builder: RuleBuilder | None = None,
        opencti_url: str | None = None,
        dead_letters: DeadLetters | None = None,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.platform = platform
        self.index = index
        self.rules = rules if settings.create_rules else None
        self.rule_builder = rule_builder if self.rules is not None else None
        self.now = now or (lambda: datetime.now(UTC))
        self.documents = IndicatorDocuments(
            opencti_url=opencti_url, expire_days=settings.indicator_expire_time, max_tlp=settings.max_tlp
        )
        self._stop = threading.Event()
        self.batcher = StreamBatcher(
            index,
            platform.save_stream_position,
            batch_size=settings.batch_size,
            dead_letters=dead_letters or DeadLetters(settings.dead_letter_path),
            stopping=self._stop.is_set,
            sleep=sleep,
        )
        self.known_rules: set[str] = set()
        self.rule_expiry: dict[str, datetime] = {}
        self.fatal: BaseException | None = None
        self.events = 0

    # ------------------------------------------------------------------ lifecycle

    def setup(self) -> None:
        """Template and index, pattern types in OpenCTI, indicator-match rules: all idempotent."""
        self.index.install()
        self.platform.ensure_vocabulary("pattern_type_ov", PATTERN_TYPES)
        if self.rules is not None and self.rule_builder is not None:
            self.rules.ensure(self.rule_builder.indicator_match_rules())
            self.known_rules = self.rules.managed_rule_ids()
            self._load_rule_expiry()

    def _load_rule_expiry(self) -> None:
        """When each per-indicator rule expires, from its `meta` (a rule edited in Kibana loses it, and
        then stays until its indicator changes: never deleted by mistake)."""
        assert self.rules is not None
        for rule_id in sorted(self.known_rules):
            if rule_id.startswith(INDICATOR_MATCH_PREFIX):
                continue
            rule = self.rules.get(rule_id) or {}
            stamp = (rule.get("meta") or {}).get("expires_at")
            if not stamp:
                continue
            with suppress(ValueError):
                self.rule_expiry[rule_id] = parse_datetime(stamp)

    def run(self) -> None:
        self.setup()
        self._maintain_safely()
        worker = threading.Thread(target=self._background, name="elastic-intel-maintenance", daemon=True)
        worker.start()
        try:
            self.platform.listen_stream(self.handle)
            ended = not self._stop.is_set()  # a replayed file ran out; the live stream only ends on stop
        finally:
            self._stop.set()
            worker.join(timeout=30)
        if self.fatal is None:
            try:
                self.batcher.flush(final=ended)
            except (RemoteError, StopRequested) as exc:
                self.fatal = exc
        if self.fatal is not None:
            raise CtiBridgeError(f"elastic-intel stopped, stream position kept: {self.fatal}") from self.fatal

    def stop(self) -> None:
        self._stop.set()
        self.platform.stop()

    def _background(self) -> None:
        tick = min(self.settings.flush_interval / 2, 1.0)
        next_sweep = time.monotonic() + self.settings.sweep_interval
        while not self._stop.wait(tick):
            try:
                self.batcher.idle_flush(self.settings.flush_interval)
            except (RemoteError, StopRequested) as exc:
                self._fail(exc)
                return
            if time.monotonic() >= next_sweep:
                self._maintain_safely()
                next_sweep = time.monotonic() + self.settings.sweep_interval

    def _maintain_safely(self) -> None:
        """Maintenance acknowledges nothing: a failure is logged and the next sweep tries again."""
        try:
            self.maintain()
        except Exception:
            log.exception("maintenance failed; the next sweep retries")

    def maintain(self) -> None:
        """Sweep what expired while nothing happened; re-stamp documents before they age out of rules."""
        now = self.now()
        with self.batcher.lock:
            swept = self.index.sweep_expired(now)
            restamped = self.index.restamp(now, RESTAMP_AFTER)
            expired_rules = sorted(rule_id for rule_id, when in self.rule_expiry.items() if when <= now)
            for rule_id in expired_rules:
                self._delete_rule(rule_id)
        if swept or restamped or expired_rules:
            log.info(
                "maintenance",
                extra={"expired_deleted": swept, "restamped": restamped, "expired_rules": len(expired_rules)},
            )

    def _fail(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
            log.error("stopping: %s", exc)
        self.stop()

    # ------------------------------------------------------------------ events

    def handle(self, event: StreamEvent) -> None:
        if self.fatal is not None:
            return  # the platform is stopping; nothing after the failure may be acknowledged
        with self.batcher.lock:
            try:
                self.batcher.begin(event)
                self.events += 1
                try:
                    self._apply(event)
                except (RemoteError, StopRequested):
                    raise
                except Exception as exc:  # one unreadable object: recorded and skipped, the stream goes on
                    log.exception("cannot map %s of event %s", event.data.get("id"), event.id)
                    reason = f"{type(exc).__name__}: {exc}"
                    failure = Failure(str(event.data.get("id")), "map", None, reason)
                    self.batcher.dead_letters.write(Origin.of(event), [failure])
                self.batcher.end(event)
            except (RemoteError, StopRequested) as exc:
                self._fail(exc)

    def _apply(self, event: StreamEvent) -> None:
        obj = event.data
        obj_type = obj.get("type")
        if obj_type == "identity":
            self.documents.remember_identity(obj)
            return
        if obj_type not in HANDLED_TYPES or not obj.get("id"):
            return
        origin = Origin.of(event)
        if event.type == "delete":
            self._remove(obj, origin)
            return
        if event.type == "merge":
            for source in event.context.get("sources") or ():
                if isinstance(source, Mapping) and source.get("id") and source.get("id") != obj.get("id"):
                    self._remove(source, origin)
        plan = self.documents.plan(obj, self.now())
        if plan is None:
            return
        for reason in plan.skipped:
            log.debug("%s: %s", plan.stix_id, reason)
        updating = event.type != "create"
        if plan.dead_reason is not None:
            log.info("removing %s: %s", plan.stix_id, plan.dead_reason)
            for doc_id in plan.ids or [document_id(plan.stix_id, 0)]:
                self.batcher.delete_document(doc_id, origin)
            if updating:
                self.batcher.keep_only(plan.stix_id, [], origin)
        else:
            for doc_id, source in plan.documents:
                self.batcher.index_document(doc_id, source, origin)
            if not plan.ids and updating:  # the value became one ECS cannot hold
                self.batcher.delete_document(document_id(plan.stix_id, 0), origin)
            if updating and (obj_type == "indicator" and _pattern_may_have_changed(event)):
                self.batcher.keep_only(plan.stix_id, plan.ids, origin)
            else:
                self.batcher.touch(plan.stix_id, plan.ids)
        if obj_type == "indicator":
            self._sync_rule(obj, None if plan.dead_reason else obj, origin, plan.expires_at)

    def _remove(self, obj: Mapping[str, Any], origin: Origin) -> None:
        stix_id = str(obj["id"])
        for doc_id in self.documents.document_ids(obj) or [document_id(stix_id, 0)]:
            self.batcher.delete_document(doc_id, origin)
        self.batcher.keep_only(stix_id, [], origin)
        if obj.get("type") == "indicator":
            self._sync_rule(obj, None, origin)

    # ------------------------------------------------------------------ rules

    def _sync_rule(
        self,
        obj: Mapping[str, Any],
        live: Mapping[str, Any] | None,
        origin: Origin,
        expires_at: datetime | None = None,
    ) -> None:
        if self.rules is None or self.rule_builder is None:
            return
        try:
            rule_id = rule_id_for(str(obj.get("id")))
        except ValueError:
            return
        body = self.rule_builder.rule_for(dict(live)) if live is not None else None
        if body is not None:
            if expires_at is not None:  # for the sweep, also after a restart (see _load_rule_expiry)
                body["meta"] = {**(body.get("meta") or {}), "expires_at": expires_at.isoformat()}
            call = partial(self._upsert_rule, body, expires_at)
            self.batcher.rule(rule_id, f"upsert rule {rule_id}", call, origin)
        elif rule_id in self.known_rules or self.batcher.has_rule(rule_id):
            self.batcher.rule(rule_id, f"delete rule {rule_id}", partial(self._delete_rule, rule_id), origin)

    def _upsert_rule(self, body: dict[str, Any], expires_at: datetime | None) -> None:
        assert self.rules is not None
        rule_id = str(body["rule_id"])
        self.rules.upsert(body)
        self.known_rules.add(rule_id)
        if expires_at is not None:
            self.rule_expiry[rule_id] = expires_at
        else:
            self.rule_expiry.pop(rule_id, None)

    def _delete_rule(self, rule_id: str) -> None:
        assert self.rules is not None
        self.rules.delete(rule_id)
        self.known_rules.discard(rule_id)
        self.rule_expiry.pop(rule_id, None)


def _pattern_may_have_changed(event: StreamEvent) -> bool:
    """An update whose patch touches the pattern (or carries no patch) may have lost values."""
    patch = event.context.get("patch")
    if not isinstance(patch, list):
        return True
    return any(isinstance(op, Mapping) and str(op.get("path", "")).startswith("/pattern") for op in patch)


def build(config: ElasticIntelConfig, platform: Platform) -> ElasticIntelConnector:
    settings = config.elastic_security
    index = IntelIndex(build_elasticsearch(settings), settings.index_name, attempts=settings.max_retries)
    opencti_url = config.opencti.url if not config.opencti.url.endswith(".invalid") else None
    rules = builder = None
    if settings.create_rules:
        builder = RuleBuilder(settings, opencti_url)
        client = build_kibana_client(settings)
        rules = KibanaRules(client, settings.kibana_space, attempts=settings.max_retries)
    return ElasticIntelConnector(
        settings, platform, index, rules=rules, rule_builder=builder, opencti_url=opencti_url
    )
