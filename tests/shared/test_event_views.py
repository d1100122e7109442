"""Event views (``shared.event_views.view_decoder``): a consumer decodes ``order.recorded`` into
only the fields it reads. Each view reads those fields exactly as the full model does, every
record the full model rejects for a field the view reads is still poison (dead-lettered by the
consumer loop), a newer schema version is decoded in full, and a view that declares a field
differently from the contract is refused when the consumer is built."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from services.campaign.handlers import VIEWS as CAMPAIGN_VIEWS
from services.segment.handlers import VIEWS as SEGMENT_VIEWS
from shared import topics
from shared.bus import PoisonMessage, envelope_decoder
from shared.event_views import AddressRegion, check_view, view_decoder
from shared.events import (
    EnvelopeBase,
    Order,
    OrderCore,
    OrderRecordedEvent,
    Payload,
    ProfileUpdatedEvent,
    ProfileUpdatedPayload,
    decode_event,
    encode_event,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.e2e_load import Orders

ENVELOPE = {
    "event_id": "0b5c2f6e-3d1a-4f8e-9a7b-2c4d6e8f0a1b",
    "occurred_at": "2026-11-02T10:00:00Z",
}
VIEWS = {"campaign": CAMPAIGN_VIEWS, "segment": SEGMENT_VIEWS}


class Record:
    """What the consumer loop hands a decoder (the fields it reads)."""

    def __init__(self, value: bytes) -> None:
        self.value = value


def _order_events() -> list[bytes]:
    orders = Orders(customers=50, seed=3)
    values = [
        encode_event(
            OrderRecordedEvent(source="ingest", key=o["customer_id"], data=Order.model_validate(o))
        )
        for o in (orders.order(f"o-{i}") for i in range(200))
    ]
    # the edges: naive times (as SQLite gives them back), an exponent amount, nothing optional
    sparse = {
        "order_id": "sparse",
        "customer_id": "c",
        "status": "refunded",
        "created_at": "2026-11-01T10:00:00",
        "currency": "CNY",
        "total_amount": "1E+3",
    }
    values.append(
        orjson.dumps(
            {**ENVELOPE, "type": "order.recorded", "source": "x", "key": "c", "data": sparse}
        )
    )
    return values


def _same(view: BaseModel, full: BaseModel) -> None:
    """Every field of the view equals the full model's, type included (recursively)."""
    for name in type(view).model_fields:
        mine, theirs = getattr(view, name), getattr(full, name)
        if isinstance(mine, BaseModel):
            _same(mine, theirs)
        elif isinstance(mine, list) and mine and isinstance(mine[0], BaseModel):
            assert len(mine) == len(theirs)
            for a, b in zip(mine, theirs, strict=True):
                _same(a, b)
        else:
            assert mine == theirs and type(mine) is type(theirs), (name, mine, theirs)


@pytest.mark.parametrize("service", list(VIEWS))
def test_a_view_reads_its_fields_as_the_full_model_does(service: str) -> None:
    decode = view_decoder(VIEWS[service])
    checked = 0
    for raw in _order_events():
        full, view = decode_event(raw), decode(raw)
        assert type(view) is not OrderRecordedEvent and view.type == "order.recorded"
        _same(view, full)
        # what the handlers call on it
        assert view.data.version_key() == full.data.version_key()
        assert view.data.net_amount == full.data.net_amount
        checked += 1
    # other types are decoded in full, as before
    other = encode_event(
        ProfileUpdatedEvent(source="p", key="c", data=ProfileUpdatedPayload(customer_id="c"))
    )
    assert decode(other) == decode_event(other)
    print(f"\n[views/{service}] {checked} order events: view fields equal the full model's")


def _poison(**changes: Any) -> bytes:
    data: dict[str, Any] = {
        "order_id": "o-y",
        "customer_id": "y",
        "status": "paid",
        "created_at": "2026-11-01T10:00:00+08:00",
        "currency": "CNY",
        "total_amount": "10.00",
        "channel": "tmall",
        "items": [{"sku": "A", "category": "shoes"}],
        "shipping": {"province": "浙江省", "city": "杭州市"},
    }
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return orjson.dumps({"type": "order.recorded", "source": "x", "key": "y", "data": data})


#: malformed in fields both views read: the full model and each view reject them
POISON = {
    "NaN amount": _poison(total_amount="NaN"),
    "amount not a number": _poison(total_amount="ten"),
    "unknown status": _poison(status="lost"),
    "no customer": _poison(customer_id=None),
    "customer a number": _poison(customer_id=7),
    "bad time": _poison(created_at="yesterday"),
    "province a number": _poison(shipping={"province": 3}),
    "shipping a list": _poison(shipping=["x"]),
}


@pytest.mark.parametrize("service", list(VIEWS))
@pytest.mark.parametrize("case", list(POISON))
def test_what_a_view_reads_malformed_is_poison(service: str, case: str) -> None:
    raw = POISON[case]
    with pytest.raises(ValidationError):
        decode_event(raw)
    with pytest.raises(PoisonMessage):
        envelope_decoder(VIEWS[service])(Record(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe not text",
        b"{not json",
        b'["a"]',
        b'{"type": "no.such.event", "source": "x", "key": "y", "data": {}}',
        b'{"type": "order.recorded", "source": "x", "key": "y", "data": {"order_id": "o",'
        b' "customer_id": "y", "status": "paid", "created_at": "2026-11-01T10:00:00+08:00",'
        b' "currency": "CNY", "total_amount": NaN}}',
    ],
)
def test_records_that_are_no_envelope_are_poison_through_a_view(raw: bytes) -> None:
    for views in VIEWS.values():
        with pytest.raises(PoisonMessage):
            envelope_decoder(views)(Record(raw))


def test_segment_reads_item_categories_and_campaign_does_not() -> None:
    raw = _poison(items=[{"sku": "A", "category": 5}])
    with pytest.raises(PoisonMessage):
        envelope_decoder(SEGMENT_VIEWS)(Record(raw))
    # the documented limit of a view: a field its consumer never reads is not validated
    event_type, _, event = envelope_decoder(CAMPAIGN_VIEWS)(Record(raw))
    assert event_type == "order.recorded" and event.data.order_id == "o-y"
    with pytest.raises(ValidationError):
        decode_event(raw)


def test_an_unknown_schema_version_is_decoded_in_full() -> None:
    raw = orjson.loads(_poison())
    raw["schema_version"] = 2
    event = view_decoder(CAMPAIGN_VIEWS)(orjson.dumps(raw))
    assert type(event) is OrderRecordedEvent
    assert event.data.items[0].sku == "A"


class _Region(Payload):
    province: int | None = None


def _view(data: type[BaseModel], topic: str = topics.ORDERS) -> type[EnvelopeBase]:
    """An ``order.recorded`` view with this ``data``, said to travel on ``topic``."""
    namespace = {
        "__annotations__": {"type": Literal["order.recorded"], "data": data},
        "type": "order.recorded",
        "topic": topic,
    }
    return type("View", (EnvelopeBase,), namespace)


def test_a_view_must_declare_its_fields_as_the_contract_does() -> None:
    class Retyped(OrderCore):
        shipping: _Region | None = None

    class Unknown(OrderCore):
        coupon: str | None = None

    class Defaulted(OrderCore):
        channel: str | None = "web"

    class Required(OrderCore):
        channel: str

    for view in (Retyped, Unknown, Defaulted, Required):
        with pytest.raises(TypeError):
            check_view(view, Order)

    class Lacking(Payload):  # leaves out required order fields
        order_id: str

    with pytest.raises(TypeError):
        check_view(Lacking, Order)

    class Fine(OrderCore):
        shipping: AddressRegion | None = None

    check_view(Fine, Order)
    # a view must be of an event on the view's own topic
    with pytest.raises(TypeError):
        view_decoder([_view(Fine, topics.CUSTOMERS)])
    assert view_decoder([_view(Fine)])(_poison()).data.total_amount == Decimal("10.00")


def _tables(db: Any, names: list[str]) -> dict[str, list[Any]]:
    from sqlalchemy import text

    with db.engine.connect() as conn:
        return {
            name: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {name}")).all()), key=str)
            for name in names
        }


def test_the_consumers_handle_their_views_as_they_handle_the_full_events(
    tmp_path: Path,
) -> None:
    """Segment's and campaign's handlers, fed the same orders decoded as their views and as
    full events, store the same rows: a handler that reads a field its view lacks fails
    here (it would dead-letter every order in production)."""
    from services.campaign import projection
    from services.campaign.app import MIGRATIONS as CAMPAIGN
    from services.segment import per_event
    from services.segment.app import MIGRATIONS as SEGMENT
    from shared.bus import Inbound
    from shared.db import Database, run_migrations
    from tests.segment.helpers import NOW

    wire = _order_events()
    stored: dict[str, list[dict[str, list[Any]]]] = {"segment": [], "campaign": []}
    for label, decode in (("view", None), ("full", decode_event)):
        for service_name, migrations in (("segment", SEGMENT), ("campaign", CAMPAIGN)):
            url = f"sqlite:///{tmp_path}/{service_name}-{label}.sqlite"
            run_migrations(migrations, url)
            db = Database.from_url(url)
            decoder = decode or view_decoder(VIEWS[service_name])
            events = [decoder(raw) for raw in wire]
            with db.unit_of_work() as session:
                if service_name == "segment":
                    messages = [
                        Inbound("crm.orders.v1", 0, i, e.key, b"", e.type, str(e.event_id), e)
                        for i, e in enumerate(events)
                    ]
                    per_event.apply_messages(session, messages, NOW)
                    tables = ["order_states", "order_versions"]
                else:
                    projection.apply_orders(session, events)
                    tables = ["customer_orders", "audience"]
            stored[service_name].append(_tables(db, tables))
            db.dispose()
    for service_name, (view, full) in stored.items():
        assert all(view.values()), service_name
        if service_name == "campaign":  # when the row was written differs, nothing else
            for rows in (view["audience"], full["audience"]):
                rows[:] = [row[:-1] for row in rows]
        assert view == full, service_name
