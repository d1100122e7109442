"""Ingest's handler registries: the envelope events it consumes and their topics come from
``HANDLERS``; the raw topics (bare objects without a type) from the topic registry
``RAW_HANDLERS``."""

from __future__ import annotations

from datetime import UTC, datetime

from devtools.testing import as_inbound
from services.ingest.consumer import CONSUMED_TOPICS
from services.ingest.handlers import HANDLERS, RAW_HANDLERS, RAW_KINDS, accept_raw, erase_customers
from shared import topics
from shared.events import (
    ContactPolicy,
    ContactPolicyChangedEvent,
    ProfileErasedEvent,
    ProfileErasedPayload,
)


def test_the_registry_acts_on_exactly_the_types_ingest_consumes() -> None:
    assert HANDLERS.event_types == {"profile.erased"}
    assert HANDLERS.topics == (topics.PROFILES,)
    assert set(RAW_KINDS) == set(topics.RAW_TOPICS)
    # every raw topic of RAW_KINDS goes to the raw handler, and nothing else does
    assert RAW_HANDLERS.topics == tuple(RAW_KINDS)
    assert set(RAW_HANDLERS.handlers.values()) == {accept_raw}
    assert (*RAW_HANDLERS.topics, topics.PROFILES) == CONSUMED_TOPICS
    # every event type of the contract on crm.profiles.v1 is handled or declared ignored
    assert HANDLERS.unclaimed() == set()


def test_erasures_reach_their_handler_and_other_profile_events_are_skipped() -> None:
    policy = ContactPolicyChangedEvent(source="t", key="c1", data=ContactPolicy(customer_id="c1"))
    erased = ProfileErasedEvent(
        source="t",
        key="c1",
        data=ProfileErasedPayload(
            customer_id="c1", erasure_id="e1", requested_at=datetime.now(UTC)
        ),
    )
    runs = HANDLERS.runs([as_inbound(policy, 0), as_inbound(erased, 1)])
    assert [(handler, [m.offset for m in run]) for handler, run in runs] == [(erase_customers, [1])]
