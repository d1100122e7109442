"""The producer guide's examples (docs/examples/producers) that can run here write an order
that ingest accepts, to the raw orders topic, keyed by customer id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kafka
import pytest

from devtools.broker import EmbeddedBroker
from services.ingest.validation import Rules, validate_order

pytestmark = pytest.mark.kafka

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "producers"


def _raw_orders(
    bootstrap: str, topic: str, expect: int
) -> list[kafka.consumer.fetcher.ConsumerRecord]:
    consumer = kafka.KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000
    )
    records = []
    try:
        for record in consumer:
            records.append(record)
            if len(records) >= expect:
                break
    finally:
        consumer.close()
    return records


@pytest.mark.parametrize(
    ("command", "order_id", "customer_id"),
    [
        ([sys.executable, "kafka_python_producer.py"], "KP-1001", "c-1001"),
        ([sys.executable, "confluent_producer.py"], "CK-1001", "c-1002"),
        (["sh", "kcat.sh"], "SH-1001", "c-1005"),  # the kcat-less fallback
    ],
    ids=["kafka-python", "confluent-kafka", "command line"],
)
def test_the_example_writes_an_order_ingest_accepts(
    broker: EmbeddedBroker, namespace: str, command: list[str], order_id: str, customer_id: str
) -> None:
    topic = namespace + "crm.raw.orders.v1"
    admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    admin.create_topics([kafka.admin.NewTopic(topic, 3, 1)])  # as ingest does at start
    admin.close()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "CRM_TOPIC_NAMESPACE": namespace,
        # the venv is NOT on PATH (a fresh shell): kcat.sh must find it by itself
        "PATH": os.pathsep.join(
            d
            for d in os.environ["PATH"].split(os.pathsep)
            if Path(d).resolve() != Path(sys.executable).parent.resolve()
        ),
    }
    done = subprocess.run(
        command, cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"sent {order_id} to {topic}[" in done.stdout or done.stdout.startswith(
        f"sent {order_id}"
    )

    (record,) = _raw_orders(broker.bootstrap_servers, topic, expect=1)
    assert record.key == customer_id.encode()
    order = validate_order(json.loads(record.value), Rules())  # raises if ingest would reject it
    assert (order.order_id, order.customer_id) == (order_id, customer_id)
