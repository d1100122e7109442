"""Generate the AsyncAPI document of our topics from the event models (docs/asyncapi.json).

``python -m shared.asyncapi`` rewrites the file; a test fails when it is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from shared import apikeys, events, manifest, topics
from shared.registry import envelope_classes

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"

#: what each topic of the public contract (``shared.manifest.public_topics()``) carries,
#: in words; a topic added to the manifest needs its line here (``build`` names it)
DESCRIPTIONS: dict[str, str] = {
    topics.RAW_ORDERS: "A bare order object (the REST body of POST /v1/orders); key optional.",
    topics.RAW_CUSTOMERS: "A bare customer object; key optional.",
    topics.RAW_INTERACTIONS: "A bare interaction object; key optional.",
    topics.ORDERS: "Validated, normalised order versions (the newest state of an order).",
    topics.CUSTOMERS: "Validated, normalised customer records.",
    topics.INTERACTIONS: "Reviews, service tickets, returns, complaints, disputes, campaign responses.",
    topics.PROFILES: "Contact policy changes, merges, unmerges, erasures and targeting attributes.",
    topics.SEGMENTS: "A customer's scores, lifecycle stage or segment memberships changed (key: the customer id); a custom segment was deleted (segment.deleted, keyed by the segment id).",
    topics.CAMPAIGN_MESSAGES: "A message request for a channel gateway.",
    topics.CAMPAIGN_RECEIPTS: "Delivery receipts: delivered, failed, opened, clicked, unsubscribed.",
    apikeys.APIKEYS_TOPIC: "Compacted: the newest record of each managed API key (secret as a SHA-256 hash only), keyed by key id; every service follows it from the beginning.",
    apikeys.APIKEY_USAGE_TOPIC: "When a service last saw a managed API key used (about every 10 s), keyed by key id.",
    topics.EXPORT_REQUESTS: "A subject-access export was requested: every customer id of the person, keyed by export id.",
    topics.EXPORT_PARTS: "One service's section of a subject-access export (personal data: keep briefly), keyed by export id.",
    topics.ERASURES_APPLIED: "A service applied one part (customer id) of an erasure in its own database: the erasure id, the part and the service, never the customer id; keyed by erasure id. Profile shows per erasure which services are pending.",
    topics.DEADLETTER: "A rejected record: its origin (topic, partition, offset), its shape and digest, and why; never its content (it may hold personal data), keyed by the origin topic/partition.",
}  # fmt: skip

#: the writers of the topics no manifest entry writes (the API key topics, which every
#: service creates itself); the others' come from ``shared.manifest.writers``
NAMED_WRITERS: dict[str, str] = {
    apikeys.APIKEYS_TOPIC: "profile",
    apikeys.APIKEY_USAGE_TOPIC: "every service",
}


def channel_table() -> dict[str, tuple[str, str, tuple[type[Any], ...]]]:
    """topic -> (its writer, description, messages), for every topic of the manifest's
    public contract: the messages are the envelope classes that declare the topic
    (``EnvelopeBase.topic``) or, on a raw topic, the bare object (``events.RAW_RECORDS``)."""
    carried: dict[str, list[type[Any]]] = {}
    for cls in envelope_classes():
        carried.setdefault(cls.topic, []).append(cls)
    for topic, model in events.RAW_RECORDS.items():
        carried.setdefault(topic, []).append(model)
    found: dict[str, tuple[str, str, tuple[type[Any], ...]]] = {}
    for topic in manifest.public_topics():
        if topic not in DESCRIPTIONS:
            raise KeyError(f"{topic} has no description in shared.asyncapi.DESCRIPTIONS")
        if topic not in carried:
            raise KeyError(f"no event class declares topic {topic} (shared.events)")
        writer = NAMED_WRITERS.get(topic) or manifest.writers(topic)
        found[topic] = (writer, DESCRIPTIONS[topic], tuple(carried[topic]))
    return found


def build() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a dict."""
    found = channel_table()
    models = sorted({m for _, _, ms in found.values() for m in ms}, key=lambda m: m.__name__)
    _, schema = models_json_schema(
        [(m, "serialization") for m in models], ref_template="#/components/schemas/{model}"
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic, (writer, description, ms) in found.items():
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
