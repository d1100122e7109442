"""Managed API keys: the key record every service honours, its cache, and the feed that fills it.

Profile owns the keys (create, list, rotate, revoke: ``services/profile/apikey_routes.py``)
and publishes every change of a key, through its outbox, as an ``apikey.recorded`` event
on the compacted topic ``crm.apikeys.v1`` (keyed by key id, so compaction keeps the newest
record of each key). The record carries a SHA-256 hash of the secret, never the secret.

Every service process runs a :class:`KeyFeed`: a thread that reads that topic from the
beginning without a consumer group (each process needs every record) and keeps a
:class:`KeyDirectory` up to date, so a revocation reaches every service within about a
second, without a restart and without services calling each other. The admin key of the
environment (``CRM_API_KEY``) and ``CRM_API_KEYS`` stay as the bootstrap: they are checked
first and need no broker.

A managed key reads ``crm_<key id>_<secret>``: the key id finds the record, the secret's
hash is compared in constant time. Secrets are 256 random bits, so a fast hash is enough
(a slow password hash would only slow every request down).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import threading
from datetime import datetime
from typing import Any, ClassVar, Literal

from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError
from pydantic import ValidationError

from shared import manifest, topics
from shared.events import EnvelopeBase, Payload, ensure_aware, utcnow
from shared.producer import consumer_without_topic_creation

log = logging.getLogger(__name__)

#: the compacted topic of key records (one per key id, newest wins)
APIKEYS_TOPIC = topics.APIKEYS
#: every service reports there when it last saw each key used; profile keeps the newest
APIKEY_USAGE_TOPIC = topics.APIKEY_USAGE
KEY_PREFIX = "crm_"


class ApiKeyState(Payload):
    """Everything a service needs to check a managed key; the secret only as a hash."""

    key_id: str
    name: str
    scopes: list[str]
    secret_hash: str
    #: after a rotation with a grace period, the previous secret also works until then
    previous_secret_hash: str | None = None
    previous_valid_until: datetime | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    #: overrides the per-scope default rate limit (``limits`` notation, e.g. "100/minute")
    rate_limit: str | None = None
    #: grows with every change of the key; a record older than the one held is ignored
    version: int = 1


class ApiKeyRecordedEvent(EnvelopeBase):
    """A managed API key was created or changed (rotated, revoked); the newest state."""

    topic: ClassVar[str] = topics.APIKEYS
    type: Literal["apikey.recorded"] = "apikey.recorded"
    data: ApiKeyState


class ApiKeyUsage(Payload):
    key_id: str
    service: str
    last_used_at: datetime


class ApiKeyUsedEvent(EnvelopeBase):
    """A service saw a managed key used (the newest use since its previous report)."""

    topic: ClassVar[str] = topics.APIKEY_USAGE
    type: Literal["apikey.used"] = "apikey.used"
    data: ApiKeyUsage


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key_id() -> str:
    return secrets.token_hex(8)


def new_secret() -> str:
    # base64url without "_" so that the key splits unambiguously on it
    return secrets.token_urlsafe(32).replace("_", "x")


def compose_key(key_id: str, secret: str) -> str:
    """The key a client sends: ``crm_<key id>_<secret>``."""
    return f"{KEY_PREFIX}{key_id}_{secret}"


def split_key(presented: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a managed key, or None if it does not have that form."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


class KeyRefused(Exception):
    """A managed key that is not (or no longer) valid; ``reason`` says why."""

    def __init__(self, reason: Literal["unknown", "revoked", "expired"]) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyDirectory:
    """The managed keys this process knows, by key id (thread-safe; newest version wins)."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKeyState] = {}
        self._lock = threading.Lock()
        #: key id -> the last time this process saw the key used (read by the usage report)
        self.last_used: dict[str, datetime] = {}

    def apply(self, state: ApiKeyState) -> bool:
        """Take a key record; False if an equal or newer version is already held."""
        with self._lock:
            held = self._keys.get(state.key_id)
            if held is not None and held.version >= state.version:
                return False
            self._keys[state.key_id] = state
            return True

    def get(self, key_id: str) -> ApiKeyState | None:
        return self._keys.get(key_id)

    def __len__(self) -> int:
        return len(self._keys)

    def resolve(self, presented: str, now: datetime | None = None) -> ApiKeyState:
        """The record of a presented managed key; raises :class:`KeyRefused`."""
        parts = split_key(presented)
        if parts is None:
            raise KeyRefused("unknown")
        key_id, secret = parts
        state = self._keys.get(key_id)
        if state is None:
            raise KeyRefused("unknown")
        now = now or utcnow()
        digest = hash_secret(secret)
        matches = hmac.compare_digest(digest, state.secret_hash)
        if not matches and state.previous_secret_hash and state.previous_valid_until:
            matches = hmac.compare_digest(
                digest, state.previous_secret_hash
            ) and now < ensure_aware(state.previous_valid_until)
        if not matches:
            raise KeyRefused("unknown")
        if state.revoked_at is not None:
            raise KeyRefused("revoked")
        if state.expires_at is not None and now >= ensure_aware(state.expires_at):
            raise KeyRefused("expired")
        self.last_used[key_id] = now
        return state


def ensure_keys_topics(
    bootstrap_servers: str, namespace: str = "", partitions: int = 1, replication_factor: int = 1
) -> None:
    """Create the key topics if missing: the record topic compacted (plain if the broker
    refuses the setting: the feed reads every record anyway and the newest version wins),
    the usage topic plain, both with ``partitions`` (the service's ``topic_partitions``, the
    count its topic drift check expects). Every service calls it, so none depends on
    profile being up."""
    wanted = {
        namespace + APIKEYS_TOPIC: {"cleanup.policy": "compact"},
        namespace + APIKEY_USAGE_TOPIC: {},
    }
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        for topic, configs in wanted.items():
            if topic in existing:
                continue
            try:
                admin.create_topics(
                    [NewTopic(topic, partitions, replication_factor, topic_configs=configs)],
                    timeout_ms=10000,
                )
            except TopicAlreadyExistsError:
                continue
            except Exception as exc:
                if not configs:
                    raise
                log.warning("broker refused a compacted %s (%s); creating it plain", topic, exc)
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(
                        [NewTopic(topic, partitions, replication_factor)], timeout_ms=10000
                    )
    finally:
        with contextlib.suppress(Exception):
            admin.close()


class KeyFeed:
    """A thread that keeps a :class:`KeyDirectory` equal to the key topic.

    No consumer group: every process reads every partition from the beginning (the topic
    holds one small record per key), so a process that starts late still knows every key.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        directory: KeyDirectory,
        namespace: str = "",
        poll_timeout_ms: int = 200,
        fetch_max_wait_ms: int = 500,
        partitions: int = 1,
        replication_factor: int = 1,
    ) -> None:
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.bootstrap_servers = bootstrap_servers
        self.directory = directory
        self.namespace = namespace
        self.topic = namespace + APIKEYS_TOPIC
        self.poll_timeout_ms = poll_timeout_ms
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: set once the topic was read up to its end at least once
        self.caught_up = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="apikey-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:
                log.warning("api key feed: %s; retrying", exc)
                self._stop.wait(2.0)

    def _follow(self) -> None:
        ensure_keys_topics(
            self.bootstrap_servers, self.namespace, self.partitions, self.replication_factor
        )
        consumer = consumer_without_topic_creation(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        try:
            partitions = None
            while not partitions and not self._stop.is_set():
                partitions = consumer.partitions_for_topic(self.topic)
                if not partitions:
                    self._stop.wait(0.5)
            if self._stop.is_set() or not partitions:
                return
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_beginning(*assigned)
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=self.poll_timeout_ms)
                for records in batches.values():
                    for record in records:
                        self._apply(record.value)
                if not batches:
                    self.caught_up.set()
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def _apply(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            event = ApiKeyRecordedEvent.model_validate_json(raw)
        except ValidationError as exc:
            log.warning("api key feed: skipped an unreadable record (%s)", exc.error_count())
            return
        self.directory.apply(event.data)


class UsageReporter:
    """Every ``interval`` seconds, publishes when this process last saw each key used (only
    keys used since the previous report). Best effort, straight to the broker and not
    through an outbox: a lost report only makes a ``last_used_at`` a little older."""

    def __init__(
        self, directory: KeyDirectory, publisher: Any, service: str, interval: float = 10.0
    ) -> None:
        self.directory = directory
        self.publisher = publisher
        self.service = service
        self.interval = interval
        self._reported: dict[str, datetime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="apikey-usage", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.report()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.report()
            except Exception as exc:
                log.warning("api key usage report failed (%s); next time", exc)

    def report(self) -> int:
        """Publish the uses not reported yet; returns how many keys were reported."""
        fresh = {
            key_id: at
            for key_id, at in list(self.directory.last_used.items())
            if self._reported.get(key_id) != at
        }
        for key_id, at in fresh.items():
            event = ApiKeyUsedEvent(
                source=self.service,
                key=key_id,
                data=ApiKeyUsage(key_id=key_id, service=self.service, last_used_at=at),
            )
            self.publisher.send(APIKEY_USAGE_TOPIC, key_id, event.model_dump_json().encode())
        self._reported.update(fresh)
        return len(fresh)


def decode_usage(record: Any) -> tuple[str, str, ApiKeyUsedEvent]:
    """The ``ConsumerLoop`` decoder of the usage topic."""
    event = ApiKeyUsedEvent.model_validate_json(record.value)
    return event.type, str(event.event_id), event


def public_view(state: ApiKeyState, last_used_at: datetime | None = None) -> dict[str, Any]:
    """A key as the API shows it: never the secret or its hash."""
    return {
        "key_id": state.key_id,
        "name": state.name,
        "scopes": list(state.scopes),
        "created_at": state.created_at,
        "expires_at": state.expires_at,
        "revoked_at": state.revoked_at,
        "rate_limit": state.rate_limit,
        "last_used_at": last_used_at,
        "version": state.version,
    }


#: the scopes a route asks for beyond ``<service>:read`` and ``<service>:write``
CROSS_CUTTING_SCOPES = frozenset({"ingest:admin", "pii:read", "keys:admin", "metrics:read"})

#: every scope a route asks for: each service's (``shared.manifest``) read and write, and
#: the cross-cutting ones; a key may also hold "<service>:*" or "*" (everything)
KNOWN_SCOPES = frozenset(
    {f"{name}:{access}" for name in manifest.NAMES for access in ("read", "write")}
    | CROSS_CUTTING_SCOPES
)


def scope_is_known(scope: str) -> bool:
    """True for a scope a key may hold: a known one, ``"<prefix>:*"`` of one, or ``"*"``."""
    if scope == "*" or scope in KNOWN_SCOPES:
        return True
    prefix, _, rest = scope.partition(":")
    return rest == "*" and any(s.startswith(prefix + ":") for s in KNOWN_SCOPES)
