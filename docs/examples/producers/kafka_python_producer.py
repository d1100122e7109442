"""Write one order to crm.raw.orders.v1 with kafka-python (3.0.11+; install crc32c beside it).

KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python kafka_python_producer.py
"""

import json
import os
from datetime import UTC, datetime

from kafka import KafkaProducer

topic = os.environ.get("CRM_TOPIC_NAMESPACE", "") + "crm.raw.orders.v1"
producer = KafkaProducer(
    bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    acks="all",  # the broker has it before send() succeeds
    linger_ms=5,  # batch bursts
    value_serializer=lambda order: json.dumps(order, ensure_ascii=False).encode("utf-8"),
    key_serializer=str.encode,
)
now = datetime.now(UTC).isoformat()
order = {
    "order_id": os.environ.get("ORDER_ID", "KP-1001"),
    "customer_id": "c-1001",
    "status": "paid",
    "created_at": now,
    "paid_at": now,
    "updated_at": now,  # the version: a later updated_at supersedes this order
    "currency": "CNY",
    "total_amount": "199.00",  # money as a decimal string, never a float
    "channel": "tmall",
    "buyer": {"name": "张三", "mobile": "13800138000"},
    "shipping": {"province": "浙江省", "city": "杭州市"},
    "items": [{"sku": "TEA-001", "name": "西湖龙井", "unit_price": "199.00", "quantity": 1}],
}
# key by customer id: one customer's records stay in order on one partition
metadata = producer.send(topic, key=order["customer_id"], value=order).get(timeout=30)
producer.flush()
producer.close()
print(f"sent {order['order_id']} to {metadata.topic}[{metadata.partition}]@{metadata.offset}")
