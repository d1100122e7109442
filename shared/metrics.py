"""Prometheus metrics shared by every service (one process-wide registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "crm_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "crm_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMED = Counter("crm_consumer_records_total", "Records consumed", ["consumer", "topic"])
PROCESSED = Counter(
    "crm_consumer_processed_total", "Records processed (committed)", ["consumer", "topic"]
)
DUPLICATES = Counter(
    "crm_consumer_duplicates_total", "Redelivered records recognised and skipped", ["consumer"]
)
RETRIES = Counter("crm_consumer_retries_total", "Transient failures retried", ["consumer"])
DEADLETTERED = Counter(
    "crm_consumer_deadlettered_total",
    "Records sent to the dead-letter topic",
    ["consumer", "topic"],
)
CONSUMER_LAG = Gauge(
    "crm_consumer_lag", "Records behind the high watermark", ["consumer", "topic", "partition"]
)
BATCH_SECONDS = Histogram(
    "crm_consumer_batch_seconds",
    "Time to process and commit one poll batch",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OUTBOX_PUBLISHED = Counter("crm_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_PENDING = Gauge("crm_outbox_pending", "Outbox rows waiting to be published", ["service"])
CONSUMER_STALLED = Gauge(
    "crm_consumer_stalled",
    "1 while the consumer has had no assignment, or no progress while behind, past its bound",
    ["consumer"],
)
CONSUMER_REBUILDS = Counter(
    "crm_consumer_rebuilds_total",
    "Stalled group members replaced by a fresh member",
    ["consumer"],
)
BROKER_UP = Gauge(
    "crm_broker_up",
    "1 while the broker answered the service's last exchange, 0 when not",
    ["service"],
)
TOPIC_PARTITION_DRIFT = Gauge(
    "crm_topic_partition_drift",
    "Partitions a topic has minus the configured count (0 when as configured)",
    ["service", "topic"],
)
