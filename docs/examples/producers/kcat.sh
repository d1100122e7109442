#!/bin/sh
# Write one order from the command line. kcat needs librdkafka >= 2.3 against the embedded
# broker: Debian's kcat 1.7.1 (librdkafka 2.0.2) fails the ApiVersions handshake. Where no
# recent kcat is at hand, the `crm-produce` one-liner below (kafka-python) does the same.
set -eu
# the fallback needs kafka-python: the project's venv (make install) unless CRM_PYTHON says
# otherwise; `python` from PATH only when neither is there
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${CRM_PYTHON:-$HERE/../../../.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
TOPIC="${CRM_TOPIC_NAMESPACE:-}crm.raw.orders.v1"
NOW="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ORDER="{\"order_id\":\"SH-1001\",\"customer_id\":\"c-1005\",\"status\":\"paid\",\"created_at\":\"$NOW\",\"paid_at\":\"$NOW\",\"updated_at\":\"$NOW\",\"currency\":\"CNY\",\"total_amount\":\"35.00\",\"channel\":\"wechat_mini\"}"
if command -v kcat >/dev/null 2>&1 && [ "${USE_KCAT:-0}" = 1 ]; then
    # key and value separated by a tab (-K): key = customer id
    printf 'c-1005\t%s\n' "$ORDER" | kcat -P -b "$BOOTSTRAP" -t "$TOPIC" -K "$(printf '\t')"
else
    printf '%s' "$ORDER" | "$PYTHON" -c '
import sys
from kafka import KafkaProducer
p = KafkaProducer(bootstrap_servers=sys.argv[1], acks="all")
m = p.send(sys.argv[2], key=b"c-1005", value=sys.stdin.buffer.read()).get(30)
p.close()
print(f"sent SH-1001 to {m.topic}[{m.partition}]@{m.offset}")
' "$BOOTSTRAP" "$TOPIC"
fi
