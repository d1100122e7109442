import pytest

from shared import asyncapi, events, manifest
from shared.registry import envelope_classes


def test_asyncapi_document_is_current() -> None:
    """docs/asyncapi.json is generated from the event models: regenerate it when they change."""
    assert asyncapi.DOC_PATH.read_text(encoding="utf-8") == asyncapi.render(), (
        "docs/asyncapi.json is stale: run `python -m shared.asyncapi`"
    )


def test_every_topic_is_documented() -> None:
    doc = asyncapi.build()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == set(manifest.public_topics())
    assert "OrderRecordedEvent" in doc["components"]["schemas"]
    assert set(asyncapi.DESCRIPTIONS) == set(manifest.public_topics()), (
        "each topic of the manifest needs one description in shared.asyncapi.DESCRIPTIONS"
    )


def test_every_event_type_is_on_a_channel() -> None:
    """An event class of the ``Event`` union (or beside its topic) whose topic no manifest
    entry writes or receives would be missing from the contract: it fails here."""
    on_channels = {m for _, _, ms in asyncapi.channel_table().values() for m in ms}
    missing = {
        cls.__name__
        for cls in (*events.EVENT_TYPES.values(), *envelope_classes())
        if cls not in on_channels
    }
    assert missing == set(), f"on no channel (no manifest entry writes their topic): {missing}"
    assert set(events.RAW_RECORDS.values()) <= on_channels


def test_a_topic_without_a_description_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(asyncapi.DESCRIPTIONS, events.OrderRecordedEvent.topic)
    with pytest.raises(KeyError, match=r"crm\.orders\.v1 has no description"):
        asyncapi.build()
