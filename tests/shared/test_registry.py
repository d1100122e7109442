"""The handler registry: types and topics derived from it, runs in order, nothing unclaimed."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest

from shared import manifest, topics
from shared.bus import Inbound
from shared.events import (
    ContactPolicy,
    ContactPolicyChangedEvent,
    EnvelopeBase,
    Order,
    OrderRecordedEvent,
    ProfileErasedEvent,
    ProfileErasedPayload,
)
from shared.registry import BatchKind, Registry, TopicRegistry, envelope_classes, event_type_of


class ProfileRenamed(EnvelopeBase):
    """A type a producer might add to crm.profiles.v1 tomorrow (not in the contract)."""

    topic: ClassVar[str] = topics.PROFILES
    type: Literal["profile.renamed"] = "profile.renamed"
    data: dict[str, Any]


class Untopical(EnvelopeBase):
    type: Literal["nowhere.seen"] = "nowhere.seen"
    data: dict[str, Any]


def message(event: EnvelopeBase, offset: int) -> Inbound:
    event_type = event_type_of(type(event))
    return Inbound(event.topic, 0, offset, event.key, b"", event_type, str(offset), event)


def _order(customer_id: str) -> OrderRecordedEvent:
    return OrderRecordedEvent(
        source="t",
        key=customer_id,
        data=Order.model_validate(
            {
                "order_id": f"o-{customer_id}",
                "customer_id": customer_id,
                "status": "paid",
                "total_amount": "1.00",
                "currency": "CNY",
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
            }
        ),
    )


def _policy(customer_id: str) -> ContactPolicyChangedEvent:
    return ContactPolicyChangedEvent(
        source="t", key=customer_id, data=ContactPolicy(customer_id=customer_id)
    )


def _erased(customer_id: str) -> ProfileErasedEvent:
    return ProfileErasedEvent(
        source="t",
        key=customer_id,
        data=ProfileErasedPayload(
            customer_id=customer_id, erasure_id="e", requested_at="2026-01-01T00:00:00Z"
        ),
    )


def test_types_and_topics_are_derived_from_the_registry() -> None:
    def handle(session: Any, messages: list[Inbound], deps: None) -> None: ...

    registry: Registry[None] = Registry(
        {OrderRecordedEvent: handle, ProfileErasedEvent: handle},
        ignores=[ContactPolicyChangedEvent],
    )
    assert registry.event_types == {"order.recorded", "profile.erased"}
    assert registry.topics == (topics.ORDERS, topics.PROFILES)
    assert registry.on_topics(topics.PROFILES).event_types == {"profile.erased"}
    assert registry.without_topics(topics.PROFILES).topics == (topics.ORDERS,)


def test_runs_keep_arrival_order_and_skip_what_is_not_registered() -> None:
    calls: list[tuple[str, list[int]]] = []

    def orders(session: Any, messages: list[Inbound], deps: str) -> str:
        calls.append(("orders", [m.offset for m in messages]))
        return deps

    def erasures(session: Any, messages: list[Inbound], deps: str) -> str:
        calls.append(("erasures", [m.offset for m in messages]))
        return deps

    registry: Registry[str] = Registry({OrderRecordedEvent: orders, ProfileErasedEvent: erasures})
    batch = [
        message(_order("a"), 0),
        message(_policy("a"), 1),  # not registered: skipped, and it does not split the run
        message(_order("b"), 2),
        message(_erased("a"), 3),
        message(_order("c"), 4),
    ]
    assert registry.dispatch(None, batch, "deps") == ["deps", "deps", "deps"]  # type: ignore[arg-type]
    assert calls == [("orders", [0, 2]), ("erasures", [3]), ("orders", [4])]


def test_a_topic_registry_hands_each_topics_messages_to_its_handler_as_one_run() -> None:
    calls: list[tuple[str, str, list[int]]] = []

    def accept(session: Any, messages: list[Inbound], deps: str) -> str:
        calls.append((deps, messages[0].topic, [m.offset for m in messages]))
        return deps

    registry: TopicRegistry[str] = TopicRegistry(
        {topics.RAW_ORDERS: accept, topics.RAW_CUSTOMERS: accept}
    )
    assert registry.topics == (topics.RAW_ORDERS, topics.RAW_CUSTOMERS)

    def raw(topic: str, offset: int) -> Inbound:
        return Inbound(topic, 0, offset, None, b"{}", "raw", str(offset), {})

    batch = [
        raw(topics.RAW_CUSTOMERS, 0),
        raw(topics.RAW_ORDERS, 1),
        raw(topics.RAW_INTERACTIONS, 2),  # not registered: skipped
        raw(topics.RAW_CUSTOMERS, 3),
        raw(topics.RAW_ORDERS, 4),
    ]
    assert registry.dispatch(None, batch, "deps") == ["deps", "deps"]  # type: ignore[arg-type]
    # runs in the order their topics first arrive, each in arrival order
    assert calls == [
        ("deps", topics.RAW_CUSTOMERS, [0, 3]),
        ("deps", topics.RAW_ORDERS, [1, 4]),
    ]


def test_an_event_type_added_to_a_consumed_topic_is_unclaimed_until_decided() -> None:
    def handle(session: Any, messages: list[Inbound], deps: None) -> None: ...

    registry: Registry[None] = Registry({ProfileErasedEvent: handle})
    known = [*envelope_classes(), ProfileRenamed]
    assert ProfileRenamed in registry.unclaimed(known)
    assert ContactPolicyChangedEvent in registry.unclaimed(known)
    # a type on a topic not consumed is nobody's business here
    assert OrderRecordedEvent not in registry.unclaimed(known)
    decided: Registry[None] = Registry(
        {ProfileErasedEvent: handle, ProfileRenamed: handle},
        ignores=[
            c
            for c in envelope_classes()
            if c.topic == topics.PROFILES and c is not ProfileErasedEvent
        ],
    )
    assert decided.unclaimed(known) == set()


def test_a_registry_refuses_a_class_without_a_topic_or_both_handled_and_ignored() -> None:
    def handle(session: Any, messages: list[Inbound], deps: None) -> None: ...

    with pytest.raises(TypeError, match="Untopical"):
        Registry({Untopical: handle})
    with pytest.raises(ValueError, match="OrderRecordedEvent"):
        Registry({OrderRecordedEvent: handle}, ignores=[OrderRecordedEvent])


def test_every_contract_event_class_declares_its_topic() -> None:
    classes = envelope_classes()
    assert {event_type_of(c) for c in classes} >= {
        "order.recorded",
        "profile.erased",
        "export.part_recorded",
        "apikey.used",
    }
    assert ProfileRenamed not in classes  # a subclass is not part of the contract by existing
    for cls in classes:
        assert cls.topic in manifest.public_topics(), cls


def test_steps_of_one_batch_kind_share_one_context_per_run() -> None:
    calls: list[Any] = []

    def start(session: Any, messages: list[Inbound], deps: str) -> list[Any]:
        calls.append(("start", deps, [m.offset for m in messages]))
        return []

    def prepare(context: list[Any]) -> None:
        calls.append(("prepare", list(context)))

    def finish(context: list[Any]) -> list[Any]:
        calls.append(("finish", list(context)))
        return context

    def noted(context: list[Any], message: Inbound) -> None:
        context.append(("noted", message.offset))

    def order(context: list[Any], message: Inbound) -> None:
        context.append(("order", message.offset))

    def erasure(context: list[Any], message: Inbound) -> None:
        context.append(("erasure", message.offset))

    def policies(session: Any, messages: list[Inbound], deps: str) -> str:
        calls.append(("policies", [m.offset for m in messages]))
        return "policies"

    kind: BatchKind[str, list[Any]] = BatchKind(start, finish, prepare=prepare)
    registry: Registry[str] = Registry(
        {
            OrderRecordedEvent: kind.step(order, note=noted),
            ProfileErasedEvent: kind.step(erasure),
            ContactPolicyChangedEvent: policies,
        }
    )
    batch = [
        message(_order("a"), 0),
        message(_erased("a"), 1),
        message(_order("b"), 2),
        message(_policy("a"), 3),  # a handler of its own: it ends the run
        message(_order("c"), 4),
    ]
    results = registry.dispatch(None, batch, "deps")  # type: ignore[arg-type]
    first = [("noted", 0), ("noted", 2), ("order", 0), ("erasure", 1), ("order", 2)]
    assert results == [first, "policies", [("noted", 4), ("order", 4)]]
    assert calls == [
        ("start", "deps", [0, 1, 2]),
        ("prepare", [("noted", 0), ("noted", 2)]),
        ("finish", first),
        ("policies", [3]),
        ("start", "deps", [4]),
        ("prepare", [("noted", 4)]),
        ("finish", [("noted", 4), ("order", 4)]),
    ]
