"""A dead letter carries no record, so ``crm deadletters show`` and ``redrive`` read the
original from its origin topic: the same bytes (checked against the digest), or a clear
error when the topic no longer holds it."""

from __future__ import annotations

from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from crmctl import kafka_ops
from crmctl.client import CrmError
from crmctl.config import Target
from shared import topics
from shared.bus import Inbound, dead_letter_event, ensure_topics
from shared.events import event_to_dict

pytestmark = pytest.mark.kafka


def test_the_original_record_is_read_back_from_its_origin(broker: Any, namespace: str) -> None:
    ensure_topics(broker.bootstrap_servers, [topics.RAW_ORDERS], 1, namespace=namespace)
    topic = namespace + topics.RAW_ORDERS
    value = '{"order_id": "o-1", "buyer": {"name": "张三"}}'.encode()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    meta = producer.send(topic, key=b"tb_zhangsan88", value=value).get(15)
    producer.close()
    message = Inbound(
        topics.RAW_ORDERS, meta.partition, meta.offset, "tb_zhangsan88", value, "?", "d", None
    )
    letter = dead_letter_event(
        message, source="t", namespace=namespace, consumer_group="g", error="e", error_type="X", attempts=1
    )  # fmt: skip
    record = kafka_ops.DeadLetterRecord(0, 0, event_to_dict(letter))
    target = Target(
        urls={}, api_key=None, bootstrap_servers=broker.bootstrap_servers, namespace=namespace
    )
    assert kafka_ops.original_record(target, record) == (topic, b"tb_zhangsan88", value)

    # another record at that position (the digest differs) is refused
    other = kafka_ops.DeadLetterRecord(
        0, 0, {**record.event, "data": {**record.data, "value_sha256": "0" * 64}}
    )
    with pytest.raises(CrmError, match="another record"):
        kafka_ops.original_record(target, other)
    # a position the topic does not hold (past its retention) says so
    gone = kafka_ops.DeadLetterRecord(
        0, 0, {**record.event, "data": {**record.data, "origin_offset": meta.offset + 50}}
    )
    with pytest.raises(CrmError, match="retention"):
        kafka_ops.original_record(target, gone, timeout=2)

    # redrive writes the same bytes back
    [result] = kafka_ops.redrive(target, [record])
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, consumer_timeout_ms=5000)

    tp = TopicPartition(topic, result["partition"])
    consumer.assign([tp])
    consumer.seek(tp, result["offset"])
    again = next(iter(consumer))
    consumer.close()
    assert (again.key, again.value) == (b"tb_zhangsan88", value)
