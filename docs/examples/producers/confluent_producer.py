"""Write one order to crm.raw.orders.v1 with confluent-kafka (librdkafka; 2.16 works with
the embedded broker, librdkafka 2.0.2 does not).

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python confluent_producer.py
"""

import json
import os
import sys
from datetime import UTC, datetime

from confluent_kafka import Producer

topic = os.environ.get("CRM_TOPIC_NAMESPACE", "") + "crm.raw.orders.v1"
producer = Producer(
    {
        "bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "acks": "all",
        "enable.idempotence": True,  # retries never duplicate or reorder
        "linger.ms": 5,
    }
)
now = datetime.now(UTC).isoformat()
order = {
    "order_id": os.environ.get("ORDER_ID", "CK-1001"),
    "customer_id": "c-1002",
    "status": "paid",
    "created_at": now,
    "paid_at": now,
    "updated_at": now,
    "currency": "CNY",
    "total_amount": "88.50",
    "channel": "jd",
    "shipping": {"province": "广东省", "city": "深圳市"},
}
delivered = []


def on_delivery(error, message):
    if error is not None:
        sys.exit(f"delivery failed: {error}")
    delivered.append(f"{message.topic()}[{message.partition()}]@{message.offset()}")


producer.produce(
    topic,
    key=order["customer_id"],
    value=json.dumps(order, ensure_ascii=False).encode("utf-8"),
    on_delivery=on_delivery,
)
if producer.flush(30) != 0 or not delivered:
    sys.exit("not delivered within 30 s")
print(f"sent {order['order_id']} to {delivered[0]}")
