"""A local stand-in for the OpenCTI platform that the real pycti helper talks to in tests.

It answers the GraphQL operations `OpenCTIConnectorHelper` sends (health check, registration, pings with
state, works, bundle pushes, vocabularies, entity reads for enrichment, `indicators` by `regardingOf`,
playbook steps), serves the live stream over SSE the way the platform does (`connected` event, heartbeats
carrying the last event id, `Last-Event-ID`/`from` resume, recovery, dependency resolution, the
`listen-delete`/`no-dependencies`/`with-inferences` headers) and delivers enrichment requests on the
connector's RabbitMQ listen queue.

Registration declares the exchanges and queues the platform would create on a real broker, under names
unique to this instance, so pycti's `amqp` queue protocol runs for real; `read_push_queue` reads back
what pycti published. Everything received is recorded behind a lock; accessors return copies.

Operations it does not know are recorded in `unknown_operations` and answered with a GraphQL error, so a
new pycti call cannot slip through a test unnoticed.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

PLATFORM_VERSION = "6.9.0"
CONNECTOR_EXCHANGE = "amqp.connector.exchange"
WORKER_EXCHANGE = "amqp.worker.exchange"
STREAM_EVENT_VERSION = "4"
OCTI_EXTENSION = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba"
CONNECTOR_TYPES = {
    "EXTERNAL_IMPORT",
    "INTERNAL_IMPORT_FILE",
    "INTERNAL_ENRICHMENT",
    "INTERNAL_ANALYSIS",
    "INTERNAL_EXPORT_FILE",
    "STREAM",
}
# fmt: off
DEFAULT_VOCABULARIES: dict[str, tuple[str, ...]] = {
    "pattern_type_ov": ("stix", "pcre", "sigma", "snort", "suricata", "yara", "tanium-signal", "spl", "eql",
                        "shodan"),
    "incident_type_ov": ("alert", "compromise", "information-system-disruption", "ransomware",
                         "reputation-damage", "data-leak", "typosquatting", "phishing", "cybercrime"),
    "case_severity_ov": ("low", "medium", "high", "critical"),
    "case_priority_ov": ("P1", "P2", "P3", "P4"),
    "incident_response_types_ov": ("ransomware", "data-leak"),
    "note_types_ov": ("internal", "assessment", "analysis", "feedback", "external"),
}
# fmt: on
VOCABULARY_FIELDS = {
    "pattern_type_ov": ["pattern_type"],
    "incident_type_ov": ["incident_type"],
    "case_severity_ov": ["severity"],
    "case_priority_ov": ["priority"],
    "incident_response_types_ov": ["response_types"],
    "note_types_ov": ["note_types"],
}
OBSERVABLE_TYPES = {
    "ipv4-addr": "IPv4-Addr",
    "ipv6-addr": "IPv6-Addr",
    "domain-name": "Domain-Name",
    "hostname": "Hostname",
    "url": "Url",
    "email-addr": "Email-Addr",
    "mac-addr": "Mac-Addr",
    "file": "StixFile",
    "directory": "Directory",
    "process": "Process",
    "user-account": "User-Account",
    "network-traffic": "Network-Traffic",
    "autonomous-system": "Autonomous-System",
    "windows-registry-key": "Windows-Registry-Key",
    "user-agent": "User-Agent",
    "artifact": "Artifact",
    "software": "Software",
    "x509-certificate": "X509-Certificate",
    "text": "Text",
}
DOMAIN_TYPES = {
    "indicator": "Indicator",
    "incident": "Incident",
    "case-incident": "Case-Incident",
    "attack-pattern": "Attack-Pattern",
    "vulnerability": "Vulnerability",
    "malware": "Malware",
    "tool": "Tool",
    "report": "Report",
    "note": "Note",
    "grouping": "Grouping",
    "campaign": "Campaign",
    "intrusion-set": "Intrusion-Set",
    "threat-actor": "Threat-Actor",
    "infrastructure": "Infrastructure",
    "course-of-action": "Course-Of-Action",
    "observed-data": "Observed-Data",
}
IDENTITY_CLASSES = {
    "individual": "Individual",
    "class": "Sector",
    "system": "System",
    "securityplatform": "SecurityPlatform",
}
IDENTITY_TYPES = {"Organization", "Individual", "Sector", "System", "SecurityPlatform"}
# GraphQL root fields that read one entity by id, and the entity types each may return (None: any).
ENTITY_READERS: dict[str, set[str] | None] = {
    "stixCoreObject": None,
    "stixCyberObservable": set(OBSERVABLE_TYPES.values()),
    "stixDomainObject": set(DOMAIN_TYPES.values()) | IDENTITY_TYPES,
    "indicator": {"Indicator"},
    "incident": {"Incident"},
    "caseIncident": {"Case-Incident"},
    "attackPattern": {"Attack-Pattern"},
    "vulnerability": {"Vulnerability"},
    "malware": {"Malware"},
    "report": {"Report"},
    "note": {"Note"},
    "identity": IDENTITY_TYPES,
}
_OPERATION = re.compile(r"^\s*(query|mutation|subscription)\b\s*([A-Za-z_]\w*)?", re.S)
_ROOT_FIELD = re.compile(r"\{\s*([A-Za-z_]\w*)")
_WORK_EDIT_FIELD = re.compile(r"workEdit\s*\([^)]*\)\s*\{\s*([A-Za-z_]\w*)")
_STREAM_PATH = re.compile(r"^/stream(?:/(?P<id>[^/?]+))?/?$")


class GraphQLError(Exception):
    """An error the double answers in the GraphQL `errors` array (HTTP 200), as the platform does."""

    def __init__(self, message: str, name: str = "FUNCTIONAL_ERROR") -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is, both for pycti (sent in the registration answer) and for the double."""

    host: str = "127.0.0.1"
    port: int = 5672
    user: str = "guest"
    password: str = "guest"
    vhost: str = "/"


@dataclass(frozen=True)
class GraphQLCall:
    """One GraphQL request as received: operation name, root field, variables and useful headers."""

    operation: str | None
    field: str | None
    variables: dict[str, Any]
    headers: dict[str, str]


@dataclass
class ConnectorRecord:
    """A registered connector and what the platform keeps for it (state as the JSON string pycti sent)."""

    id: str
    name: str
    type: str
    scope: list[str]
    registration: dict[str, Any]
    state: str | None = None
    state_reset: bool = False
    registrations: int = 1
    pings: int = 0
    connector_info: dict[str, Any] | None = None
    queue_messages_number: int = 0
    queue_messages_size: int = 0
    push_queue: str = ""
    listen_queue: str = ""
    push_routing: str = ""
    listen_routing: str = ""

    @property
    def parsed_state(self) -> dict[str, Any] | None:
        return json.loads(self.state) if self.state else None


@dataclass
class WorkRecord:
    """A work as the platform tracks it; `status` goes wait → progress (received) → complete."""

    id: str
    connector_id: str
    name: str
    multipart: bool = False
    status: str = "wait"
    received_message: str | None = None
    processed_message: str | None = None
    in_error: bool = False
    expectations: int = 0
    reported_expectations: int = 0
    errors: list[Any] = field(default_factory=list)
    pings: int = 0


@dataclass(frozen=True)
class PushedBundle:
    """A bundle the platform received: via `api` (stixBundlePush), `amqp` (push queue) or `playbook`."""

    via: str
    connector_id: str | None
    work_id: str | None
    bundle: dict[str, Any]
    sequence: int | None = None
    applicant_id: str | None = None

    @property
    def objects(self) -> list[dict[str, Any]]:
        return list(self.bundle.get("objects", []))


@dataclass(frozen=True)
class EnrichmentDelivery:
    """An enrichment request the double published on a connector's listen queue."""

    connector_id: str
    work_id: str
    message: dict[str, Any]


@dataclass(frozen=True)
class LogEvent:
    """One event of the platform's stream log."""

    id: str
    type: str
    payload: dict[str, Any]
    streams: frozenset[str] | None = None

    @property
    def key(self) -> tuple[int, int]:
        return _event_key(self.id)


@dataclass
class StreamConnection:
    """One SSE connection: request line, headers (lower-case names) and every frame sent on it."""

    path: str
    stream_id: str | None
    headers: dict[str, str]
    query: dict[str, str]
    status: int = 200
    start_id: str | None = None
    frames: list[tuple[str | None, str, Any]] = field(default_factory=list)
    closed: bool = False

    @property
    def data_events(self) -> list[tuple[str | None, str, Any]]:
        """Frames other than `connected` and `heartbeat`."""
        return [f for f in self.frames if f[1] not in ("connected", "heartbeat")]


@dataclass
class _Entity:
    stix: dict[str, Any]
    internal_id: str
    entity_type: str
    created_at: str
    updated_at_ms: int


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_from_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def _stream_id_from(param: str | None) -> str | None:
    """The platform's reading of `from`/`Last-Event-ID`/`recover`: an event id, "0", or an ISO date."""
    if not param:
        return None
    if param in ("0", "0-0"):
        return "0-0"
    parts = param.split("-")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return param
    try:
        parsed = datetime.fromisoformat(param.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return f"{int(parsed.timestamp() * 1000)}-0"


# The schema's Status and StatusTemplate fields (opencti.graphql), for the selection of a `statuses` query.
_STATUS_FIELDS = {"id", "template_id", "template", "type", "order", "disabled", "scope"}
_STATUS_TEMPLATE_FIELDS = {"id", "name", "color", "usages"}


def _unknown_status_fields(query: str) -> list[str]:
    """Fields a `statuses` query selects on its nodes that Status (or its template) does not have."""
    node = re.search(r"node\s*\{(.*)\}\s*\}\s*\}", query, re.S)
    if node is None:
        return []
    body = node.group(1)
    template = re.search(r"template\s*\{([^}]*)\}", body)
    outer = body.replace(template.group(0), "template") if template else body
    fields = set(re.findall(r"[A-Za-z_]\w*", outer))
    inner = set(re.findall(r"[A-Za-z_]\w*", template.group(1))) if template else set()
    return sorted((fields - _STATUS_FIELDS) | (inner - _STATUS_TEMPLATE_FIELDS))


def _connection(nodes: list[Any], total: int, *, cursors: bool = False) -> dict[str, Any]:
    """One page of a GraphQL connection holding the first `len(nodes)` of `total` nodes."""
    edges = [{"cursor": str(i), "node": n} if cursors else {"node": n} for i, n in enumerate(nodes)]
    page_info = {
        "startCursor": None,
        "endCursor": None,
        "hasNextPage": total > len(nodes),
        "hasPreviousPage": False,
        "globalCount": total,
    }
    return {"edges": edges, "pageInfo": page_info}


def entity_type_of(stix: Mapping[str, Any]) -> str:
    """OpenCTI's entity type for a STIX object (IPv4-Addr, StixFile, Organization, ...)."""
    stix_type = stix["type"]
    if stix_type in OBSERVABLE_TYPES:
        return OBSERVABLE_TYPES[stix_type]
    if stix_type in DOMAIN_TYPES:
        return DOMAIN_TYPES[stix_type]
    if stix_type == "identity":
        return IDENTITY_CLASSES.get(str(stix.get("identity_class", "")).lower(), "Organization")
    if stix_type == "relationship":
        return "stix-core-relationship"
    if stix_type == "sighting":
        return "stix-sighting-relationship"
    if stix_type == "marking-definition":
        return "Marking-Definition"
    raise ValueError(f"the double does not know STIX type {stix_type!r}")


def stix_refs(stix: Mapping[str, Any]) -> list[str]:
    """Every STIX id an object references through a `*_ref` or `*_refs` property."""
    refs: list[str] = []
    for key, value in stix.items():
        if key.endswith("_ref") and isinstance(value, str):
            refs.append(value)
        elif key.endswith("_refs") and isinstance(value, list):
            refs.extend(v for v in value if isinstance(v, str))
    return refs


class OpenCTIDouble:
    """OpenCTI as pycti sees it, on 127.0.0.1 with an ephemeral port. Use as a context manager.

    `broker` is where pycti is sent for the `amqp` protocol; with `declare_queues` the double also declares
    the platform's exchanges and queues there at registration (needs a reachable broker) and removes them
    on `stop()`. `heartbeat_interval` is the SSE heartbeat period (the platform's default is 5 s).
    """

    def __init__(
        self,
        *,
        token: str = "double-token-0a1b2c3d",
        broker: BrokerSettings | None = None,
        declare_queues: bool = False,
        heartbeat_interval: float = 5.0,
        version: str = PLATFORM_VERSION,
    ) -> None:
        self.token = token
        self.broker = broker or BrokerSettings()
        self.declare_queues = declare_queues
        self.heartbeat_interval = heartbeat_interval
        self.version = version
        self.applicant_id = str(uuid.uuid4())
        self.prefix = f"ctibridge-test-{uuid.uuid4().hex[:12]}_"
        self.connector_exchange = self.prefix + CONNECTOR_EXCHANGE
        self.worker_exchange = self.prefix + WORKER_EXCHANGE
        self.jwks = _public_jwks()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._calls: list[GraphQLCall] = []
        self._unknown: list[GraphQLCall] = []
        self._auth_failures: list[str] = []
        self._faults: dict[str, list[str]] = {}
        self._connectors: dict[str, ConnectorRecord] = {}
        self._deleted_connectors: list[str] = []
        self._works: dict[str, WorkRecord] = {}
        self._bundles: list[PushedBundle] = []
        self._deliveries: list[EnrichmentDelivery] = []
        self._vocabularies: dict[tuple[str, str], dict[str, Any]] = {}
        self._created_vocabularies: list[dict[str, Any]] = []
        self._entities: dict[str, _Entity] = {}
        self._entity_ids: dict[str, str] = {}
        self._live_streams: set[str] = {"live"}
        self._log: list[LogEvent] = []
        self._log_keys: list[tuple[int, int]] = []
        self._last_event_key = (0, 0)
        self._connections: list[StreamConnection] = []
        self._sockets: dict[int, socket.socket] = {}
        self._refuse_streams = 0
        self._declared_queues: list[str] = []
        for category, names in DEFAULT_VOCABULARIES.items():
            for name in names:
                self._add_vocabulary(category, name, "", builtin=True)
        # Status templates and workflows as a new platform has them: only Report has a workflow.
        self._status_templates: dict[str, str] = {}
        self._statuses: list[dict[str, Any]] = []
        self.add_workflow("Report", ["NEW", "IN_PROGRESS", "ANALYZED", "CLOSED"])

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the double is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OpenCTIDouble:
        handler = type("_Handler", (_Handler,), {"double": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="opencti-double",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every stream, stop serving and delete what was declared on the broker."""
        with self._changed:
            self._stopping = True
            sockets = list(self._sockets.values())
            self._changed.notify_all()
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.declare_queues and self._declared_queues:
            with suppress(pika.exceptions.AMQPError, OSError), self._channel() as channel:
                for queue in self._declared_queues:
                    channel.queue_delete(queue=queue)
                channel.exchange_delete(exchange=self.connector_exchange)
                channel.exchange_delete(exchange=self.worker_exchange)

    def __enter__(self) -> OpenCTIDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls

    def fail_next(self, field_name: str, message: str = "injected failure", times: int = 1) -> None:
        """Answer the next `times` calls of a GraphQL root field (or `workEdit.<field>`) with an error."""
        with self._lock:
            self._faults.setdefault(field_name, []).extend([message] * times)

    def load_entities(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Put STIX objects in the platform's knowledge (entity reads, enrichment, recovery, dependencies)."""
        with self._lock:
            for obj in objects:
                stix = json.loads(json.dumps(obj))
                existing = self._entities.get(stix["id"])
                entity = _Entity(
                    stix=stix,
                    internal_id=existing.internal_id if existing else str(uuid.uuid4()),
                    entity_type=entity_type_of(stix),
                    created_at=existing.created_at if existing else _now_iso(),
                    updated_at_ms=int(time.time() * 1000),
                )
                self._entities[stix["id"]] = entity
                self._entity_ids[entity.internal_id] = stix["id"]

    def add_workflow(
        self, entity_type: str, names: Iterable[str], *, scope: str = "GLOBAL", disabled: Iterable[str] = ()
    ) -> dict[str, str]:
        """Give `entity_type` a workflow of these status templates (created when new), as an admin does in
        the settings; return each status's id by template name."""
        off = set(disabled)
        ids = {}
        with self._lock:
            order = sum(1 for st in self._statuses if st["type"] == entity_type)
            for name in names:
                template_id = self._status_templates.setdefault(name, str(uuid.uuid4()))
                order += 1
                status = {
                    "id": str(uuid.uuid4()),
                    "template_id": template_id,
                    "template": {"id": template_id, "name": name, "color": "#607d8b"},
                    "type": entity_type,
                    "order": order,
                    "disabled": name in off,
                    "scope": scope,
                }
                self._statuses.append(status)
                ids[name] = status["id"]
        return ids

    def reset_connector_state(self, connector_id: str) -> None:
        """Reset a connector's state as a user does in the UI: the next ping gets the empty state back
        instead of storing the one it carries."""
        with self._lock:
            record = self._connectors[connector_id]
            record.state = ""
            record.state_reset = True

    def set_queue_details(self, connector_id: str, messages_number: int, messages_size: int) -> None:
        """What `GetConnector` reports about the connector's queue (buffering checks read it)."""
        with self._lock:
            record = self._connectors[connector_id]
            record.queue_messages_number = messages_number
            record.queue_messages_size = messages_size

    def create_live_stream(self, stream_id: str) -> None:
        with self._lock:
            self._live_streams.add(stream_id)

    def append_event(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        message: str | None = None,
        context: Mapping[str, Any] | None = None,
        origin: Mapping[str, Any] | None = None,
        inferred: bool = False,
        streams: Iterable[str] | None = None,
    ) -> str:
        """Append an event to the stream log (connected clients get it at once); return its id."""
        if event_type not in ("create", "update", "delete", "merge"):
            raise ValueError(f"unknown stream event type {event_type!r}")
        stix = json.loads(json.dumps(data))
        extension = stix.setdefault("extensions", {}).setdefault(OCTI_EXTENSION, {})
        extension.setdefault("extension_type", "property-extension")
        extension.setdefault("id", str(uuid.uuid4()))
        extension.setdefault("type", entity_type_of(stix))
        extension["is_inferred"] = inferred
        payload: dict[str, Any] = {
            "version": STREAM_EVENT_VERSION,
            "type": event_type,
            "scope": "external",
            "data": stix,
            "message": message or f"{event_type}s a {extension['type']} `{stix.get('name', stix['id'])}`",
            "origin": dict(origin) if origin is not None else {"user_id": self.applicant_id},
        }
        if context is not None:
            payload["context"] = dict(context)
        with self._changed:
            ms = int(time.time() * 1000)
            last_ms, last_seq = self._last_event_key
            key = (last_ms, last_seq + 1) if ms <= last_ms else (ms, 0)
            self._last_event_key = key
            event = LogEvent(
                f"{key[0]}-{key[1]}", event_type, payload, frozenset(streams) if streams else None
            )
            self._log.append(event)
            self._log_keys.append(key)
            self._changed.notify_all()
        return event.id

    def drop_stream_connections(self) -> int:
        """Cut every open SSE connection (the client sees the server go away); return how many."""
        with self._changed:
            sockets = list(self._sockets.values())
            self._sockets.clear()
            for connection in self._connections:
                connection.closed = True
            self._changed.notify_all()
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(sockets)

    def refuse_stream_connections(self, count: int = 1) -> None:
        """Answer the next `count` stream requests with 503, as a platform that is restarting."""
        with self._lock:
            self._refuse_streams += count

    def send_enrichment_request(
        self,
        connector_id: str,
        entity_id: str,
        *,
        playbook: bool = False,
        include_stix: bool = True,
    ) -> str:
        """Publish an enrichment request for a loaded entity on the connector's listen queue.

        Creates the work the platform opens for the request and returns its id. With `playbook`, the
        message carries the playbook context and the bundle of the previous step, as a playbook step would.
        """
        with self._lock:
            record = self._connectors.get(connector_id)
            if record is None or record.type != "INTERNAL_ENRICHMENT":
                raise ValueError(f"{connector_id} is not a registered enrichment connector")
            entity = self._find_entity(entity_id)
            if entity is None:
                raise ValueError(f"{entity_id} is not loaded in the double")
            stix_objects = [entity.stix] + [
                self._entities[ref].stix for ref in stix_refs(entity.stix) if ref in self._entities
            ]
            work = self._new_work(connector_id, f"Enrichment of {entity.stix['id']}", multipart=False)
            event: dict[str, Any] = {
                "entity_id": entity.stix["id"],
                "entity_type": entity.entity_type,
                "validation_mode": "workbench",
                "force_validation": False,
            }
            internal: dict[str, Any] = {"work_id": work.id, "applicant_id": self.applicant_id}
            if playbook:
                internal["playbook"] = {
                    "execution_id": str(uuid.uuid4()),
                    "event_id": str(uuid.uuid4()),
                    "playbook_id": str(uuid.uuid4()),
                    "data_instance_id": entity.internal_id,
                    "step_id": str(uuid.uuid4()),
                    "previous_step_id": str(uuid.uuid4()),
                }
                event["bundle"] = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": stix_objects}
            elif include_stix:
                event["stix_entity"] = json.dumps(entity.stix)
                event["stix_objects"] = json.dumps(stix_objects)
            message = {"internal": internal, "event": event}
            exchange, routing = self.connector_exchange, record.listen_routing
        with self._channel() as channel:
            channel.basic_publish(
                exchange=exchange,
                routing_key=routing,
                body=json.dumps(message),
                properties=pika.BasicProperties(delivery_mode=2, content_encoding="utf-8"),
                mandatory=True,
            )
        with self._lock:
            self._deliveries.append(EnrichmentDelivery(connector_id, work.id, message))
        return work.id

    def read_push_queue(
        self, connector_id: str, *, count: int | None = None, timeout: float = 5.0
    ) -> list[PushedBundle]:
        """Consume what pycti published on the connector's push queue (waiting for `count` messages)."""
        with self._lock:
            record = self._connectors[connector_id]
            queue = record.push_queue
        found: list[PushedBundle] = []
        deadline = time.monotonic() + timeout
        with self._channel() as channel:
            while count is None or len(found) < count:
                method, _properties, body = channel.basic_get(queue=queue, auto_ack=False)
                if method is None:
                    if count is None or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                    continue
                message = json.loads(body)
                bundle = json.loads(base64.b64decode(message["content"]).decode("utf-8"))
                found.append(
                    PushedBundle(
                        via="amqp",
                        connector_id=connector_id,
                        work_id=message.get("work_id"),
                        bundle=bundle,
                        sequence=message.get("action_sequence"),
                        applicant_id=message.get("applicant_id"),
                    )
                )
                channel.basic_ack(delivery_tag=method.delivery_tag)
        with self._lock:
            self._bundles.extend(found)
        return found

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, message: str = "") -> None:
        """Poll `predicate` until true; raise AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {message or predicate}")
            time.sleep(0.02)

    # ------------------------------------------------------------------ recorded data

    @property
    def calls(self) -> list[GraphQLCall]:
        with self._lock:
            return list(self._calls)

    def operations(self) -> list[str]:
        """Root fields of every GraphQL call, in order (`workEdit.toProcessed` style for work edits)."""
        return [c.field or "?" for c in self.calls]

    @property
    def unknown_operations(self) -> list[GraphQLCall]:
        with self._lock:
            return list(self._unknown)

    @property
    def auth_failures(self) -> list[str]:
        with self._lock:
            return list(self._auth_failures)

    def connector(self, connector_id: str) -> ConnectorRecord:
        with self._lock:
            return replace(self._connectors[connector_id])

    @property
    def connector_ids(self) -> list[str]:
        with self._lock:
            return list(self._connectors)

    @property
    def deleted_connectors(self) -> list[str]:
        with self._lock:
            return list(self._deleted_connectors)

    def state(self, connector_id: str) -> dict[str, Any] | None:
        """The state the platform holds for a connector (what the last ping stored)."""
        with self._lock:
            return self._connectors[connector_id].parsed_state

    def works(self, connector_id: str | None = None) -> list[WorkRecord]:
        with self._lock:
            return [
                replace(w, errors=list(w.errors))
                for w in self._works.values()
                if connector_id is None or w.connector_id == connector_id
            ]

    def work(self, work_id: str) -> WorkRecord:
        with self._lock:
            found = self._works[work_id]
            return replace(found, errors=list(found.errors))

    def bundles(self, *, via: str | None = None, work_id: str | None = None) -> list[PushedBundle]:
        with self._lock:
            return [
                b
                for b in self._bundles
                if (via is None or b.via == via) and (work_id is None or b.work_id == work_id)
            ]

    @property
    def deliveries(self) -> list[EnrichmentDelivery]:
        with self._lock:
            return list(self._deliveries)

    def vocabulary_names(self, category: str) -> list[str]:
        with self._lock:
            return sorted(name for cat, name in self._vocabularies if cat == category)

    @property
    def created_vocabularies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for v in self._created_vocabularies]

    @property
    def stream_connections(self) -> list[StreamConnection]:
        with self._lock:
            return [replace(c, frames=list(c.frames), headers=dict(c.headers)) for c in self._connections]

    # ------------------------------------------------------------------ GraphQL

    def _record_auth_failure(self, path: str) -> None:
        with self._lock:
            self._auth_failures.append(path)

    def _graphql(self, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        query = str(body.get("query") or "")
        variables = body.get("variables") or {}
        operation_match = _OPERATION.match(query)
        operation = operation_match.group(2) if operation_match else None
        root_match = _ROOT_FIELD.search(query, operation_match.end() if operation_match else 0)
        if operation_match and "(" in query[operation_match.end() : operation_match.end() + 2]:
            # Skip the variable definitions: the root field follows the first brace after them.
            root_match = _ROOT_FIELD.search(query, query.index(")", operation_match.end()))
        root = root_match.group(1) if root_match else None
        if root == "workEdit":
            sub = _WORK_EDIT_FIELD.search(query)
            root = f"workEdit.{sub.group(1)}" if sub else root
        kept = {
            k.lower(): v
            for k, v in headers.items()
            if k.lower() in ("user-agent", "opencti-applicant-id", "opencti-draft-id", "opencti-work-id")
        }
        call = GraphQLCall(operation, root, json.loads(json.dumps(variables)), kept)
        with self._lock:
            self._calls.append(call)
            fault = self._faults.get(root or "")
            injected = fault.pop(0) if fault else None
        if injected is not None:
            return _error(injected, "INJECTED_FAILURE")
        if root == "statuses" and (bad := _unknown_status_fields(query)):
            return _error(f"Cannot query field(s) {bad} on type Status", "GRAPHQL_VALIDATION_FAILED")
        handler = self._resolvers().get(root or "")
        if handler is None and root in ENTITY_READERS:
            return {"data": {root: self._read_entity(root, variables)}}
        if handler is None:
            with self._lock:
                self._unknown.append(call)
            return _error(
                f"The OpenCTI double does not implement {operation or root or 'this operation'}",
                "UNSUPPORTED_OPERATION",
            )
        try:
            return {"data": handler(variables)}
        except GraphQLError as exc:
            return _error(str(exc), exc.name)

    def _resolvers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "about": lambda _v: {"about": {"version": self.version}},
            "registerConnector": self._register,
            "pingConnector": self._ping,
            "connector": self._get_connector,
            "deleteConnector": self._delete_connector,
            "workAdd": self._work_add,
            "workEdit.toReceived": self._work_to_received,
            "workEdit.toProcessed": self._work_to_processed,
            "workEdit.addExpectations": self._work_add_expectations,
            "workEdit.reportExpectation": self._work_report_expectation,
            "workEdit.ping": self._work_ping,
            "stixBundlePush": self._bundle_push,
            "playbookStepExecution": self._playbook_step,
            "vocabularies": self._vocabularies_query,
            "vocabulary": self._vocabulary_query,
            "vocabularyAdd": self._vocabulary_add,
            "indicators": self._indicators_query,
            "statuses": self._statuses_query,
        }

    def _register(self, variables: dict[str, Any]) -> dict[str, Any]:
        data = variables.get("input") or {}
        connector_id = str(data.get("id") or "")
        try:
            uuid.UUID(connector_id)
        except ValueError as exc:
            raise GraphQLError("Connector id must be a valid UUID", "VALIDATION_ERROR") from exc
        if data.get("type") not in CONNECTOR_TYPES:
            raise GraphQLError(f"Unknown connector type {data.get('type')!r}", "VALIDATION_ERROR")
        with self._lock:
            record = self._connectors.get(connector_id)
            if record is None:
                record = ConnectorRecord(
                    id=connector_id,
                    name=str(data.get("name")),
                    type=str(data["type"]),
                    scope=list(data.get("scope") or []),
                    registration=dict(data),
                    push_queue=f"{self.prefix}push_{connector_id}",
                    listen_queue=f"{self.prefix}listen_{connector_id}",
                    push_routing=f"push_routing_{connector_id}",
                    listen_routing=f"listen_routing_{connector_id}",
                )
                self._connectors[connector_id] = record
            else:
                record.registrations += 1
                record.registration = dict(data)
                record.name, record.type = str(data.get("name")), str(data["type"])
            answer = {
                "id": connector_id,
                "connector_state": record.state,
                "jwks": self.jwks,
                "connector_user_id": self.applicant_id,
                "config": {
                    "connection": {
                        "host": self.broker.host,
                        "vhost": self.broker.vhost,
                        "use_ssl": False,
                        "port": self.broker.port,
                        "user": self.broker.user,
                        "pass": self.broker.password,
                    },
                    "s3": {
                        "endpoint": None,
                        "port": None,
                        "use_ssl": None,
                        "bucket_name": None,
                        "bucket_region": None,
                        "access_key": None,
                        "secret_key": None,
                    },
                    "listen": record.listen_queue,
                    "listen_routing": record.listen_routing,
                    "listen_exchange": self.connector_exchange,
                    "push": record.push_queue,
                    "push_routing": record.push_routing,
                    "push_exchange": self.worker_exchange,
                },
            }
        if self.declare_queues:
            self._declare(record)
        return {"registerConnector": answer}

    def _declare(self, record: ConnectorRecord) -> None:
        """Create the exchanges and queues the platform creates when a connector registers."""
        arguments = {
            "name": record.name,
            "config": {"id": record.id, "type": record.type, "scope": record.scope},
        }
        with self._channel() as channel:
            channel.exchange_declare(exchange=self.connector_exchange, exchange_type="direct", durable=True)
            channel.exchange_declare(exchange=self.worker_exchange, exchange_type="direct", durable=True)
            channel.queue_declare(queue=record.listen_queue, durable=True, arguments=arguments)
            channel.queue_bind(
                queue=record.listen_queue, exchange=self.connector_exchange, routing_key=record.listen_routing
            )
            channel.queue_declare(queue=record.push_queue, durable=True, arguments=arguments)
            channel.queue_bind(
                queue=record.push_queue, exchange=self.worker_exchange, routing_key=record.push_routing
            )
        with self._lock:
            for queue in (record.listen_queue, record.push_queue):
                if queue not in self._declared_queues:
                    self._declared_queues.append(queue)

    def _connector_record(self, connector_id: Any) -> ConnectorRecord:
        record = self._connectors.get(str(connector_id))
        if record is None:
            raise GraphQLError(
                f"No connector found with the specified ID ({connector_id})", "FUNCTIONAL_ERROR"
            )
        return record

    def _ping(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = self._connector_record(variables.get("id"))
            if record.state_reset:  # the platform consumes a pending reset instead of storing the state
                record.state_reset = False
            else:
                record.state = variables.get("state")
            record.pings += 1
            record.connector_info = variables.get("connectorInfo")
            return {
                "pingConnector": {
                    "id": record.id,
                    "connector_state": record.state,
                    "connector_info": record.connector_info,
                }
            }

    def _get_connector(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = self._connectors.get(str(variables.get("id")))
            if record is None:
                return {"connector": None}
            return {
                "connector": {
                    "id": record.id,
                    "name": record.name,
                    "active": True,
                    "auto": bool(record.registration.get("auto")),
                    "only_contextual": bool(record.registration.get("only_contextual")),
                    "connector_type": record.type,
                    "connector_scope": record.scope,
                    "connector_state": record.state,
                    "connector_queue_details": {
                        "messages_number": record.queue_messages_number,
                        "messages_size": record.queue_messages_size,
                    },
                    "updated_at": _now_iso(),
                    "created_at": _now_iso(),
                    "config": {
                        "listen": record.listen_queue,
                        "listen_exchange": self.connector_exchange,
                        "push": record.push_queue,
                        "push_exchange": self.worker_exchange,
                        "push_routing": record.push_routing,
                    },
                    "built_in": False,
                }
            }

    def _delete_connector(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = self._connector_record(variables.get("id"))
            del self._connectors[record.id]
            self._deleted_connectors.append(record.id)
            return {"deleteConnector": record.id}

    def _new_work(self, connector_id: str, name: str, multipart: bool) -> WorkRecord:
        work = WorkRecord(
            id=f"work_{connector_id}_{uuid.uuid4()}",
            connector_id=connector_id,
            name=name,
            multipart=multipart,
        )
        self._works[work.id] = work
        return work

    def _work_add(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = self._connector_record(variables.get("connectorId"))
            work = self._new_work(
                record.id, str(variables.get("friendlyName") or ""), bool(variables.get("isMultiPartWork"))
            )
            return {"workAdd": {"id": work.id}}

    def _existing_work(self, variables: dict[str, Any]) -> WorkRecord:
        work = self._works.get(str(variables.get("id")))
        if work is None:
            raise GraphQLError(f"Work {variables.get('id')} does not exist", "WORK_NOT_ALIVE")
        return work

    def _work_to_received(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            work = self._existing_work(variables)
            work.status = "progress"
            work.received_message = variables.get("message")
            return {"workEdit": {"toReceived": work.id}}

    def _work_to_processed(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            work = self._existing_work(variables)
            work.status = "complete"
            work.processed_message = variables.get("message")
            work.in_error = bool(variables.get("inError"))
            return {"workEdit": {"toProcessed": work.id}}

    def _work_add_expectations(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            work = self._existing_work(variables)
            work.expectations += int(variables.get("expectations") or 0)
            return {"workEdit": {"addExpectations": work.id}}

    def _work_report_expectation(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            work = self._existing_work(variables)
            work.reported_expectations += 1
            if variables.get("error"):
                work.errors.append(variables["error"])
            return {"workEdit": {"reportExpectation": work.id}}

    def _work_ping(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            work = self._existing_work(variables)
            work.pings += 1
            return {"workEdit": {"ping": work.id}}

    def _bundle_push(self, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            bundle = json.loads(str(variables.get("bundle")))
        except json.JSONDecodeError as exc:
            raise GraphQLError("Bundle is not valid JSON", "VALIDATION_ERROR") from exc
        if (
            not isinstance(bundle, dict)
            or bundle.get("type") != "bundle"
            or not isinstance(bundle.get("objects"), list)
        ):
            raise GraphQLError("Bundle must be a STIX bundle with objects", "VALIDATION_ERROR")
        with self._lock:
            record = self._connector_record(variables.get("connectorId"))
            work_id = variables.get("work_id")
            if work_id is not None:
                self._existing_work({"id": work_id})
            self._bundles.append(PushedBundle("api", record.id, work_id, bundle, applicant_id=None))
        return {"stixBundlePush": True}

    def _playbook_step(self, variables: dict[str, Any]) -> dict[str, Any]:
        bundle = json.loads(str(variables.get("bundle")))
        with self._lock:
            self._bundles.append(PushedBundle("playbook", None, None, bundle))
        return {"playbookStepExecution": True}

    def _add_vocabulary(self, category: str, name: str, description: str, builtin: bool) -> dict[str, Any]:
        node = {
            "id": str(uuid.uuid4()),
            "standard_id": f"vocabulary--{uuid.uuid5(uuid.NAMESPACE_URL, category + '/' + name.lower())}",
            "entity_type": "Vocabulary",
            "name": name,
            "description": description,
            "aliases": [],
            "builtin": builtin,
            "category": {
                "key": category,
                "fields": [{"key": k} for k in VOCABULARY_FIELDS.get(category, [])],
            },
        }
        self._vocabularies[(category, name)] = node
        return node

    def _find_vocabularies(self, filters: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        wanted: dict[str, list[str]] = {}
        for item in (filters or {}).get("filters", []):
            key = item.get("key")
            key = key[0] if isinstance(key, list) else key
            wanted[str(key)] = [str(v) for v in item.get("values", [])]
        unknown = set(wanted) - {"name", "category"}
        if unknown:
            raise GraphQLError(
                f"The double cannot filter vocabularies on {sorted(unknown)}", "UNSUPPORTED_FILTER"
            )
        names = {n.lower() for n in wanted.get("name", [])}
        return [
            dict(node)
            for (category, name), node in sorted(self._vocabularies.items())
            if ("category" not in wanted or category in wanted["category"])
            and ("name" not in wanted or name.lower() in names)
        ]

    def _vocabularies_query(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            nodes = self._find_vocabularies(variables.get("filters"))
        return {"vocabularies": {"edges": [{"node": n} for n in nodes]}}

    def _vocabulary_query(self, variables: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for node in self._vocabularies.values():
                if variables.get("id") in (node["id"], node["standard_id"]):
                    return {"vocabulary": dict(node)}
        return {"vocabulary": None}

    def _vocabulary_add(self, variables: dict[str, Any]) -> dict[str, Any]:
        data = variables.get("input") or {}
        name, category = data.get("name"), data.get("category")
        if not name or not category:
            raise GraphQLError("Vocabulary name and category are required", "VALIDATION_ERROR")
        with self._lock:
            for (cat, existing), node in self._vocabularies.items():
                if cat == category and existing.lower() == str(name).lower():
                    return {"vocabularyAdd": dict(node)}
            node = self._add_vocabulary(str(category), str(name), str(data.get("description") or ""), False)
            self._created_vocabularies.append(dict(data))
            return {"vocabularyAdd": dict(node)}

    def _statuses_query(self, variables: dict[str, Any]) -> dict[str, Any]:
        """`statuses(first, after, orderBy, orderMode, filters: FilterGroup, search, scope)`; the filter keys
        implemented are `type` and `scope` with the `eq` operator, as the platform's own lookups use them."""
        unknown = set(variables) - {"first", "after", "orderBy", "orderMode", "filters", "search", "scope"}
        if unknown:
            raise GraphQLError(
                f"Unknown argument(s) {sorted(unknown)} on field Query.statuses", "GRAPHQL_VALIDATION_FAILED"
            )
        if variables.get("orderBy") not in (None, "type", "order", "_score"):
            raise GraphQLError("orderBy: not a StatusOrdering value", "GRAPHQL_VALIDATION_FAILED")
        if variables.get("orderMode") not in (None, "asc", "desc"):
            raise GraphQLError("orderMode: not an OrderingMode value", "GRAPHQL_VALIDATION_FAILED")
        wanted: dict[str, set[str]] = {}
        group = variables.get("filters")
        if group is not None:
            if not isinstance(group, dict) or {"mode", "filters", "filterGroups"} - set(group):
                raise GraphQLError(
                    "filters: a FilterGroup needs mode, filters and filterGroups", "GRAPHQL_VALIDATION_FAILED"
                )
            if group["mode"] != "and" or group["filterGroups"]:
                raise GraphQLError("the double answers `statuses` with one `and` group of filters")
            for flt in group["filters"]:
                keys = flt.get("key")
                keys = [keys] if isinstance(keys, str) else list(keys or [])  # a list input takes one item
                if keys not in (["type"], ["scope"]) or flt.get("operator", "eq") != "eq":
                    raise GraphQLError(f"the double does not implement the statuses filter {keys!r}")
                wanted[keys[0]] = {str(v) for v in flt.get("values") or []}
        if variables.get("scope") is not None:
            wanted["scope"] = {str(variables["scope"])}
        with self._lock:
            found = [
                dict(st) for st in self._statuses
                if all(str(st[key]) in values for key, values in wanted.items())
            ]  # fmt: skip
        key = variables.get("orderBy") or "order"
        found.sort(key=lambda st: (st["type"], st["order"]) if key in ("type", "_score") else st["order"])
        if variables.get("orderMode") == "desc":
            found.reverse()
        first = int(variables.get("first") or 25)
        return {"statuses": _connection(found[:first], len(found), cursors=True)}

    def _indicators_query(self, variables: dict[str, Any]) -> dict[str, Any]:
        """`indicators` filtered by `regardingOf` (the only filter implemented): the indicators at the other
        end of a loaded relationship of the given type(s) with the given entity, either direction."""
        group = variables.get("filters") or {}
        if group.get("filterGroups") or len(group.get("filters") or []) != 1:
            raise GraphQLError("the double answers `indicators` with exactly one regardingOf filter")
        [flt] = group["filters"]
        if flt.get("key") != "regardingOf":
            raise GraphQLError(f"the double does not implement the indicators filter {flt.get('key')!r}")
        wanted = {v.get("key"): list(v.get("values") or []) for v in flt.get("values") or []}
        first = int(variables.get("first") or 500)
        with self._lock:
            ids = {e.stix["id"] for i in wanted.get("id", []) if (e := self._find_entity(str(i)))}
            types = set(wanted.get("relationship_type", []))
            found: list[_Entity] = []
            for rel in self._entities.values():
                if rel.entity_type != "stix-core-relationship":
                    continue
                if types and rel.stix.get("relationship_type") not in types:
                    continue
                ends = (rel.stix.get("source_ref"), rel.stix.get("target_ref"))
                for here, other in (ends, ends[::-1]):
                    entity = self._entities.get(str(other)) if here in ids else None
                    if entity is not None and entity.entity_type == "Indicator" and entity not in found:
                        found.append(entity)
            page = found[:first]
            nodes = [
                {"toStix": json.dumps(e.stix)} if variables.get("toStix") else _entity_answer(e) for e in page
            ]
        return {"indicators": _connection(nodes, len(found))}

    def _find_entity(self, entity_id: str) -> _Entity | None:
        standard_id = self._entity_ids.get(entity_id, entity_id)
        return self._entities.get(standard_id)

    def _read_entity(self, root: str, variables: dict[str, Any]) -> dict[str, Any] | None:
        allowed = ENTITY_READERS[root]
        with self._lock:
            entity = self._find_entity(str(variables.get("id")))
            if entity is None or entity.entity_type.startswith("stix-"):
                return None
            if allowed is not None and entity.entity_type not in allowed:
                return None
            return _entity_answer(entity)

    # ------------------------------------------------------------------ SSE

    def _open_stream(self, request: _Handler, stream_id: str | None, query: dict[str, str]) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        connection = StreamConnection(path=request.path, stream_id=stream_id, headers=headers, query=query)
        with self._lock:
            self._connections.append(connection)
            authorized = headers.get("authorization") == f"Bearer {self.token}"
            if not authorized:
                self._auth_failures.append(request.path)
            refused = self._refuse_streams > 0
            if refused and authorized:
                self._refuse_streams -= 1
            known = stream_id is None or stream_id in self._live_streams
        start = _stream_id_from(query.get("from") or headers.get("from") or headers.get("last-event-id"))
        recover_param = query.get("recover") or headers.get("recover") or headers.get("recover-date")
        recover = _stream_id_from(recover_param)
        connection.start_id = start
        status = HTTPStatus.OK
        if not authorized or not known:
            status = HTTPStatus.UNAUTHORIZED
        elif refused:
            status = HTTPStatus.SERVICE_UNAVAILABLE
        elif recover is not None and start is None:
            status = HTTPStatus.INTERNAL_SERVER_ERROR
        connection.status = int(status)
        if status != HTTPStatus.OK:
            connection.closed = True
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        request.send_response(HTTPStatus.OK)
        request.send_header("Content-Type", "text/event-stream; charset=utf-8")
        request.send_header("Cache-Control", "no-cache, no-transform")
        request.end_headers()
        with self._lock:
            self._sockets[id(connection)] = request.connection
        try:
            self._stream_loop(request, connection, stream_id, start, recover)
        except OSError:
            pass
        finally:
            with self._lock:
                connection.closed = True
                self._sockets.pop(id(connection), None)

    def _stream_loop(
        self,
        request: _Handler,
        connection: StreamConnection,
        stream_id: str | None,
        start: str | None,
        recover: str | None,
    ) -> None:
        options = {
            "listen_delete": connection.headers.get("listen-delete", connection.query.get("listen-delete"))
            != "false",
            "no_dependencies": (
                connection.headers.get("no-dependencies", connection.query.get("no-dependencies")) == "true"
            ),
            "with_inferences": (
                connection.headers.get("with-inferences", connection.query.get("with-inferences")) == "true"
            ),
        }
        sent_ids: set[str] = set()

        def send(event_id: str | None, event: str, data: Any) -> None:
            with self._lock:
                if connection.closed or self._stopping:
                    raise OSError("stream closed")
                connection.frames.append((event_id, event, data))
            lines = ([f"id: {event_id}"] if event_id else []) + [
                f"event: {event}",
                "data: " + json.dumps(data),
            ]
            request.wfile.write(("\n".join(lines) + "\n\n").encode("utf-8"))
            request.wfile.flush()

        with self._lock:
            first, last = (self._log[0], self._log[-1]) if self._log else (None, None)
        send(
            None,
            "connected",
            {
                "firstEventId": first.id if first else None,
                "lastEventId": last.id if last else None,
                "firstEventDate": _iso_from_ms(first.key[0]) if first else None,
                "lastEventDate": _iso_from_ms(last.key[0]) if last else None,
                "streamSize": len(self._log),
                "connectionId": str(uuid.uuid4()),
            },
        )
        position = start
        if recover is not None and start is not None and _event_key(recover) > _event_key(start):
            self._send_recovery(send, sent_ids, options, _event_key(start), _event_key(recover))
            position = recover
        if position is None:
            position = last.id if last else None
        next_heartbeat = time.monotonic() + self.heartbeat_interval
        while True:
            with self._changed:
                index = bisect.bisect_right(self._log_keys, _event_key(position)) if position else 0
                if index >= len(self._log) and not (connection.closed or self._stopping):
                    self._changed.wait(timeout=max(0.0, next_heartbeat - time.monotonic()))
                    index = bisect.bisect_right(self._log_keys, _event_key(position)) if position else 0
                pending = self._log[index:]
                if connection.closed or self._stopping:
                    return
            for event in pending:
                position = event.id
                if event.streams is None or stream_id is None or stream_id in event.streams:
                    self._send_event(send, sent_ids, options, event)
            if time.monotonic() >= next_heartbeat:
                if position:
                    send(position, "heartbeat", _iso_from_ms(_event_key(position)[0]))
                next_heartbeat = time.monotonic() + self.heartbeat_interval

    def _send_event(
        self,
        send: Callable[[str | None, str, Any], None],
        sent_ids: set[str],
        options: Mapping[str, bool],
        event: LogEvent,
    ) -> None:
        stix = event.payload["data"]
        if stix["extensions"][OCTI_EXTENSION].get("is_inferred") and not options["with_inferences"]:
            return
        if event.type == "delete":
            if options["listen_delete"]:
                send(event.id, event.type, event.payload)
            return
        self._send_dependencies(send, sent_ids, options, event.id, stix)
        send(event.id, event.type, event.payload)
        sent_ids.add(stix["id"])

    def _send_dependencies(
        self,
        send: Callable[[str | None, str, Any], None],
        sent_ids: set[str],
        options: Mapping[str, bool],
        event_id: str,
        stix: Mapping[str, Any],
    ) -> None:
        """Publish, under the same event id, what the platform resolves before an event (refs, relations)."""
        with self._lock:
            missing = [
                self._entities[r].stix for r in stix_refs(stix) if r in self._entities and r not in sent_ids
            ]
            relations = []
            if not options["no_dependencies"]:
                relations = [
                    e.stix
                    for e in self._entities.values()
                    if e.stix["type"] in ("relationship", "sighting")
                    and e.stix["id"] not in sent_ids
                    and stix["id"]
                    in (
                        e.stix.get("source_ref"),
                        e.stix.get("target_ref"),
                        e.stix.get("sighting_of_ref"),
                        *e.stix.get("where_sighted_refs", []),
                    )
                ]
        for dependency in missing + relations:
            if dependency["id"] in sent_ids:
                continue
            sent_ids.add(dependency["id"])
            self._send_dependencies(
                send, sent_ids, {**options, "no_dependencies": True}, event_id, dependency
            )
            send(event_id, "create", self._create_payload(dependency, "init-dependencies"))

    def _send_recovery(
        self,
        send: Callable[[str | None, str, Any], None],
        sent_ids: set[str],
        options: Mapping[str, bool],
        after: tuple[int, int],
        until: tuple[int, int],
    ) -> None:
        """Recovery mode: the knowledge updated between the start and the recover date, from the database."""
        with self._lock:
            snapshot = sorted(
                (e for e in self._entities.values() if after[0] < e.updated_at_ms <= until[0]),
                key=lambda e: e.updated_at_ms,
            )
        for entity in snapshot:
            if entity.stix["id"] in sent_ids:
                continue
            event_id = f"{entity.updated_at_ms}-0"
            self._send_dependencies(send, sent_ids, options, event_id, entity.stix)
            send(event_id, "create", self._create_payload(entity.stix, "init-create"))
            sent_ids.add(entity.stix["id"])

    def _create_payload(self, stix: Mapping[str, Any], referer: str) -> dict[str, Any]:
        return {
            "version": STREAM_EVENT_VERSION,
            "type": "create",
            "scope": "external",
            "data": dict(stix),
            "message": f"creates a {entity_type_of(stix)} `{stix.get('name', stix['id'])}`",
            "origin": {"referer": referer},
        }

    @contextmanager
    def _channel(self) -> Iterator[Any]:
        parameters = pika.ConnectionParameters(
            host=self.broker.host,
            port=self.broker.port,
            virtual_host=self.broker.vhost,
            credentials=pika.PlainCredentials(self.broker.user, self.broker.password),
            connection_attempts=1,
            socket_timeout=5,
        )
        connection = pika.BlockingConnection(parameters)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            yield channel
        finally:
            with suppress(pika.exceptions.AMQPError):
                connection.close()


class _Handler(BaseHTTPRequestHandler):
    """HTTP front of the double: POST /graphql and GET /stream[/id]."""

    double: OpenCTIDouble
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines."""

    def do_POST(self) -> None:
        if urlsplit(self.path).path.rstrip("/") != "/graphql":
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.headers.get("Authorization") != f"Bearer {self.double.token}":
            self.double._record_auth_failure(self.path)
            self._send_json(HTTPStatus.OK, _error("You must be logged in to do this.", "AUTH_REQUIRED"))
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send_json(HTTPStatus.BAD_REQUEST, _error("Request body is not JSON", "BAD_USER_INPUT"))
            return
        self._send_json(HTTPStatus.OK, self.double._graphql(body, dict(self.headers.items())))

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        match = _STREAM_PATH.match(parts.path)
        if match is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.double._open_stream(self, match.group("id"), query)

    def _send_json(self, status: HTTPStatus, payload: Mapping[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _error(message: str, name: str) -> dict[str, Any]:
    return {
        "errors": [{"message": message, "name": name, "extensions": {"code": name, "data": {}}}],
        "data": None,
    }


def _entity_answer(entity: _Entity) -> dict[str, Any]:
    """The entity as OpenCTI's GraphQL returns it: internal and standard ids, meta lists, STIX properties."""
    stix = entity.stix
    answer: dict[str, Any] = {
        key: value for key, value in stix.items() if key not in ("id", "type", "extensions", "spec_version")
    }
    observable = entity.entity_type in OBSERVABLE_TYPES.values()
    parents = ["Basic-Object", "Stix-Object", "Stix-Core-Object"]
    parents.append("Stix-Cyber-Observable" if observable else "Stix-Domain-Object")
    answer.update(
        {
            "id": entity.internal_id,
            "standard_id": stix["id"],
            "entity_type": entity.entity_type,
            "parent_types": parents,
            "spec_version": "2.1",
            "created_at": entity.created_at,
            "updated_at": _iso_from_ms(entity.updated_at_ms),
            "createdBy": None,
            "objectMarking": [],
            "objectLabel": [],
            "objectOrganization": [],
            "externalReferences": [],
            "importFiles": [],
            "x_opencti_stix_ids": [],
        }
    )
    if observable:
        hashes = stix.get("hashes") or {}
        answer["hashes"] = [{"algorithm": k, "hash": v} for k, v in hashes.items()]
        answer["observable_value"] = next(
            (str(stix[k]) for k in ("value", "name", "command_line", "number", "key", "body") if k in stix),
            next(iter(hashes.values()), ""),
        )
    return answer


def _public_jwks() -> str:
    """A JWK Set with one RSA public key, the form pycti parses at `listen()`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": uuid.uuid4().hex, "alg": "RS256", "use": "sig"})
    return json.dumps({"keys": [jwk]})
