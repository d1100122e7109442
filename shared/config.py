"""Settings shared by every service.

Each service subclasses :class:`ServiceSettings` with its own env prefix
(``INGEST_``, ``PROFILE_``, ...). Settings common to the whole system keep
their un-prefixed names (``KAFKA_BOOTSTRAP_SERVERS``, ``CRM_API_KEY``, ...).
Any setting can also come from a file in the secrets directory
(``CRM_SECRETS_DIR``, default ``/run/secrets``) named like its env var in
lower case, which is how docker compose secrets reach the services.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_SECRETS_DIR = os.environ.get("CRM_SECRETS_DIR", "/run/secrets")


def secrets_dir() -> str | None:
    """The folder holding secret files, if it exists."""
    return _SECRETS_DIR if os.path.isdir(_SECRETS_DIR) else None


def _common(name: str) -> Any:
    return AliasChoices(name, name.lower())


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``service_name`` and the env prefix."""

    service_name: ClassVar[str] = "service"
    default_port: ClassVar[int] = 8000

    model_config = SettingsConfigDict(
        env_prefix="SERVICE_", secrets_dir=secrets_dir(), extra="ignore", populate_by_name=True
    )

    # system-wide (un-prefixed)
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=_common("KAFKA_BOOTSTRAP_SERVERS")
    )
    topic_partitions: int = Field(3, ge=1, validation_alias=_common("CRM_TOPIC_PARTITIONS"))
    replication_factor: int = Field(1, ge=1, validation_alias=_common("CRM_REPLICATION_FACTOR"))
    data_dir: Path = Field(Path("var"), validation_alias=_common("CRM_DATA_DIR"))
    api_key: SecretStr | None = Field(None, validation_alias=_common("CRM_API_KEY"))
    # keys the signature of pagination cursors (default: derived from the admin key)
    cursor_secret: SecretStr | None = Field(None, validation_alias=_common("CRM_CURSOR_SECRET"))
    # extra keys: JSON object {"key": ["scope", ...]}
    api_keys: dict[str, list[str]] = Field(
        default_factory=dict, validation_alias=_common("CRM_API_KEYS")
    )
    # prefixes every topic name; empty in production, unique per test for fresh topics
    topic_namespace: str = Field("", validation_alias=_common("CRM_TOPIC_NAMESPACE"))
    auth_disabled: bool = Field(False, validation_alias=_common("CRM_AUTH_DISABLED"))
    # one log line per HTTP request (shared.access_log); false: only what routes log
    access_log: bool = Field(True, validation_alias=_common("CRM_ACCESS_LOG"))
    # request limits per API key: {scope: "N/period"}; a key gets the most generous limit
    # among its scopes, "default" if none matches; "*" is the admin key's (none by default)
    rate_limits: dict[str, str] = Field(
        default_factory=lambda: {"default": "1200/minute", "ingest:write": "120000/minute"},
        validation_alias=_common("CRM_RATE_LIMITS"),
    )
    # how often each service reports when it last saw each managed key used
    api_key_usage_report_seconds: float = Field(
        10.0, gt=0, validation_alias=_common("CRM_API_KEY_USAGE_REPORT_SECONDS")
    )
    # failed authentications (no key, unknown, revoked, expired) per client address
    failed_auth_limit: str = Field("30/minute", validation_alias=_common("CRM_FAILED_AUTH_LIMIT"))
    # client addresses whose X-Forwarded-For / X-Forwarded-Proto are believed (a reverse
    # proxy's: "10.0.0.5,10.0.0.6" or "*"); unset: none, the connection's own address
    # counts (so a client cannot pick the address its failed authentications count on)
    forwarded_allow_ips: str | None = Field(
        None, validation_alias=_common("CRM_FORWARDED_ALLOW_IPS")
    )
    # /metrics on the API port asks for a key with the metrics:read scope
    metrics_require_key: bool = Field(False, validation_alias=_common("CRM_METRICS_REQUIRE_KEY"))
    kafka_session_timeout_ms: int = Field(
        6000, validation_alias=_common("CRM_KAFKA_SESSION_TIMEOUT_MS")
    )
    # Kafka client tuning, measured end to end in docs/performance.md ("Kafka client"):
    # how long the producer waits to fill a batch, how it compresses, and how long a fetch
    # may wait for how many bytes
    kafka_linger_ms: int = Field(5, ge=0, validation_alias=_common("CRM_KAFKA_LINGER_MS"))
    kafka_compression: Literal["lz4", "gzip", "none"] = Field(
        "lz4", validation_alias=_common("CRM_KAFKA_COMPRESSION")
    )
    kafka_fetch_min_bytes: int = Field(
        1, ge=1, validation_alias=_common("CRM_KAFKA_FETCH_MIN_BYTES")
    )
    kafka_fetch_max_wait_ms: int = Field(
        100, ge=0, validation_alias=_common("CRM_KAFKA_FETCH_MAX_WAIT_MS")
    )
    # the same for the consumers off the order path (API keys, exports, erasure receipts,
    # ingest's profile events): an idle fetch each costs the client and the broker CPU, and
    # their records may wait this long on a broker that holds a fetch to its limit
    kafka_side_fetch_max_wait_ms: int = Field(
        500, ge=0, validation_alias=_common("CRM_KAFKA_SIDE_FETCH_MAX_WAIT_MS")
    )
    # how long a consumer under load waits to gather a small poll's records into a bigger
    # batch (ms; 0: never; an idle consumer handles its first records at once)
    consumer_gather_ms: int = Field(
        20, ge=0, le=1000, validation_alias=_common("CRM_CONSUMER_GATHER_MS")
    )
    # how long a thread may hold the GIL while another waits for it (Python's default 5 ms):
    # a service's API shares its process with consumers that hold it for whole batches, and
    # every request waits for it several times (docs/performance.md, "Reads under load")
    gil_switch_interval_ms: float = Field(
        1.0, gt=0, le=100, validation_alias=_common("CRM_GIL_SWITCH_INTERVAL_MS")
    )
    # seconds a consumer may go without a partition assignment, or without progress while
    # the broker holds records for it, before it is reported stalled and replaced
    consumer_stall_seconds: float = Field(
        30.0, gt=0, validation_alias=_common("CRM_CONSUMER_STALL_SECONDS")
    )
    # how often a service checks that its topics exist (a broker that restarted empty)
    topic_check_seconds: float = Field(
        5.0, gt=0, validation_alias=_common("CRM_TOPIC_CHECK_SECONDS")
    )
    # how long a consumer remembers the events it processed (a redelivery or replay of an
    # older one is applied again: handlers are idempotent per entity version), and how long
    # an Idempotency-Key answers with its first response
    processed_events_retention_days: int = Field(
        30, ge=1, validation_alias=_common("CRM_PROCESSED_EVENTS_RETENTION_DAYS")
    )
    idempotency_key_retention_hours: int = Field(
        24, ge=1, validation_alias=_common("CRM_IDEMPOTENCY_KEY_RETENTION_HOURS")
    )

    # per service (prefixed)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    run_consumer: bool = True
    consumer_group: str | None = None
    log_level: str = "INFO"
    # 0: /metrics is served on the API port; else only by an internal listener on this port
    metrics_port: int = Field(0, ge=0, description="internal port of /metrics (0: API port)")
    metrics_host: str = Field("127.0.0.1", description="address of the internal /metrics port")
    # an API process whose consumers run in another process (``consume``): the base URL of
    # that process's internal port; /readyz then answers 503 while it is not ready
    consumers_url: str = Field(
        "", description="internal URL of this service's consume process (its /readyz)"
    )
    # SQLite only: page cache per connection, and WAL pages between automatic checkpoints
    # (each checkpoint copies pages back and fsyncs; fewer, larger ones cost less in total)
    sqlite_cache_mib: int = Field(2, ge=1, description="SQLite page cache per connection")
    sqlite_wal_autocheckpoint_pages: int = Field(
        1000, ge=100, description="SQLite WAL pages between automatic checkpoints"
    )
    sqlite_background_checkpoint_seconds: float = Field(
        0.0,
        ge=0,
        description="if > 0: SQLite's automatic checkpoint is off and a background thread "
        "checkpoints every this many seconds, so no commit waits for a checkpoint's copying "
        "and fsync",
    )

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under the data folder."""
        if self.database_url:
            return self.database_url
        path = (self.data_dir / f"{self.service_name}.db").resolve()
        return f"sqlite:///{path}"

    @property
    def producer_tuning(self) -> dict[str, Any]:
        """kafka-python producer settings from the tuning fields (on top of make_producer's)."""
        compression = None if self.kafka_compression == "none" else self.kafka_compression
        return {"linger_ms": self.kafka_linger_ms, "compression_type": compression}

    @property
    def consumer_tuning(self) -> dict[str, Any]:
        """kafka-python consumer settings from the tuning fields (a consumer's own win)."""
        return {
            "fetch_min_bytes": self.kafka_fetch_min_bytes,
            "fetch_max_wait_ms": self.kafka_fetch_max_wait_ms,
        }

    @property
    def side_consumer_tuning(self) -> dict[str, Any]:
        """The tuning of a consumer off the order path (``ConsumerLoop.side``)."""
        return {**self.consumer_tuning, "fetch_max_wait_ms": self.kafka_side_fetch_max_wait_ms}

    @property
    def sqlite_pragmas(self) -> dict[str, int | str]:
        """The pragmas this service's SQLite connections get on top of the shared ones."""
        return {
            "cache_size": -self.sqlite_cache_mib * 1024,  # negative: KiB, not pages
            "temp_store": "MEMORY",
            "wal_autocheckpoint": (
                0
                if self.sqlite_background_checkpoint_seconds > 0
                else self.sqlite_wal_autocheckpoint_pages
            ),
        }

    @property
    def resolved_port(self) -> int:
        return self.port or self.default_port

    @property
    def group_id(self) -> str:
        """``<NAME>_CONSUMER_GROUP``, or ``crm-<service>`` under the topic namespace: two
        deployments sharing a broker under different namespaces share no consumer group
        (a group joined by both would rebalance between them)."""
        return self.consumer_group or f"{self.topic_namespace}crm-{self.service_name}"

    def all_api_keys(self) -> dict[str, set[str]]:
        """Every accepted API key with its scopes; the admin key has every scope."""
        keys = {k: set(v) for k, v in self.api_keys.items()}
        if self.api_key is not None and self.api_key.get_secret_value():
            keys[self.api_key.get_secret_value()] = {"*"}
        return keys
