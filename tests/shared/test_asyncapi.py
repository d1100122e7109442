from shared import asyncapi, topics


def test_asyncapi_document_is_current() -> None:
    """docs/asyncapi.json is generated from the event models: regenerate it when they change."""
    assert asyncapi.DOC_PATH.read_text(encoding="utf-8") == asyncapi.render(), (
        "docs/asyncapi.json is stale: run `python -m shared.asyncapi`"
    )


def test_every_topic_is_documented() -> None:
    doc = asyncapi.build()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == set(topics.ALL_TOPICS)
    assert "OrderRecordedEvent" in doc["components"]["schemas"]
