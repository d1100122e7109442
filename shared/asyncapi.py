"""Generate the AsyncAPI document of our topics from the event models (docs/asyncapi.json).

``python -m shared.asyncapi`` rewrites the file; a test fails when it is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from shared import apikeys, events, exports, manifest, topics

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"

#: topic -> (its writer when the manifest does not name it, description, messages); the
#: writers of the others come from ``shared.manifest`` (each service's ``writes``)
CHANNELS: dict[str, tuple[str | None, str, tuple[type[Any], ...]]] = {
    topics.RAW_ORDERS: (None, "A bare order object (the REST body of POST /v1/orders); key optional.", (events.Order,)),
    topics.RAW_CUSTOMERS: (None, "A bare customer object; key optional.", (events.Customer,)),
    topics.RAW_INTERACTIONS: (None, "A bare interaction object; key optional.", (events.Interaction,)),
    topics.ORDERS: (None, "Validated, normalised order versions (the newest state of an order).", (events.OrderRecordedEvent,)),
    topics.CUSTOMERS: (None, "Validated, normalised customer records.", (events.CustomerRecordedEvent,)),
    topics.INTERACTIONS: (None, "Reviews, service tickets, returns, complaints, disputes, campaign responses.", (events.InteractionRecordedEvent,)),
    topics.PROFILES: (None, "Contact policy changes, merges, unmerges, erasures and targeting attributes.", (events.ContactPolicyChangedEvent, events.ProfileMergedEvent, events.ProfileUnmergedEvent, events.ProfileErasedEvent, events.ProfileUpdatedEvent)),
    topics.SEGMENTS: (None, "A customer's scores, lifecycle stage or segment memberships changed (key: the customer id); a custom segment was deleted (segment.deleted, keyed by the segment id).", (events.SegmentChangedEvent, events.SegmentDeletedEvent)),
    topics.CAMPAIGN_MESSAGES: (None, "A message request for a channel gateway.", (events.MessageRequestedEvent,)),
    topics.CAMPAIGN_RECEIPTS: (None, "Delivery receipts: delivered, failed, opened, clicked, unsubscribed.", (events.MessageReceiptRecordedEvent,)),
    apikeys.APIKEYS_TOPIC: ("profile", "Compacted: the newest record of each managed API key (secret as a SHA-256 hash only), keyed by key id; every service follows it from the beginning.", (apikeys.ApiKeyRecordedEvent,)),
    apikeys.APIKEY_USAGE_TOPIC: ("every service", "When a service last saw a managed API key used (about every 10 s), keyed by key id.", (apikeys.ApiKeyUsedEvent,)),
    topics.EXPORT_REQUESTS: (None, "A subject-access export was requested: every customer id of the person, keyed by export id.", (exports.ExportRequestedEvent,)),
    topics.EXPORT_PARTS: (None, "One service's section of a subject-access export (personal data: keep briefly), keyed by export id.", (exports.ExportPartRecordedEvent,)),
    topics.ERASURES_APPLIED: (None, "A service applied one part (customer id) of an erasure in its own database: the erasure id, the part and the service, never the customer id; keyed by erasure id. Profile shows per erasure which services are pending.", (events.ErasureAppliedEvent,)),
    topics.DEADLETTER: (None, "A rejected record: its origin (topic, partition, offset), its shape and digest, and why; never its content (it may hold personal data), keyed by the origin topic/partition.", (events.DeadLetterRecordedEvent,)),
}  # fmt: skip


def build() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a dict."""
    models = sorted({m for _, _, ms in CHANNELS.values() for m in ms}, key=lambda m: m.__name__)
    _, schema = models_json_schema(
        [(m, "serialization") for m in models], ref_template="#/components/schemas/{model}"
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic, (named, description, ms) in CHANNELS.items():
        writer = named or manifest.writers(topic)
        channel_id = topic.replace(".", "_")
        refs = {}
        for model in ms:
            messages[model.__name__] = {
                "name": model.__name__,
                "contentType": "application/json",
                "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
            }
            refs[model.__name__] = {"$ref": f"#/components/messages/{model.__name__}"}
        channels[channel_id] = {
            "address": topic,
            "description": f"{description} Written by {writer}."
            + ("" if "keyed by" in description else " Key: the customer id."),
            "messages": refs,
        }
        operations[f"publish_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{writer} publishes",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Headless CRM topics",
            "version": "1.0.0",
            "description": "Every canonical event shares one envelope (event_id, type, "
            "schema_version, occurred_at, source, key, data); JSON on the wire; money is a "
            "decimal string. Raw topics carry the bare object an outside producer writes.",
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schema.get("$defs", {}), "messages": messages},
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    DOC_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
