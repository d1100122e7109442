"""profile.unmerged in campaign: the restored profile's orders and own events apply again."""

from __future__ import annotations

from sqlalchemy import select

from services.campaign.models import AudienceMember, CustomerAlias, CustomerOrder
from shared.db import Database
from shared.events import ProfileUnmergedEvent, ProfileUnmergedPayload
from tests.campaign.factories import NOW, consume, merge_event, order_event, segment_event


def unmerged() -> ProfileUnmergedEvent:
    return ProfileUnmergedEvent(
        source="profile",
        key="a",
        data=ProfileUnmergedPayload(
            merge_id="m1",
            survivor_id="a",
            restored_ids=["b"],
            customer_ids={"b": ["b"]},
            order_ids={"b": ["o2"]},
        ),
    )


def owners(db: Database) -> dict[str, str]:
    with db.sessions() as session:
        return dict(
            session.execute(select(CustomerOrder.order_id, CustomerOrder.customer_id)).all()
        )


def test_unmerge_gives_the_orders_and_the_id_back(db: Database) -> None:
    consume(
        db,
        [
            segment_event("a"),
            segment_event("b"),
            order_event("o1", "a", NOW),
            order_event("o2", "b", NOW),
        ],
    )
    consume(db, [merge_event("a", ["b"])])
    assert owners(db) == {"o1": "a", "o2": "a"}

    consume(db, [unmerged()])
    consume(db, [unmerged()])  # delivered twice: the same
    assert owners(db) == {"o1": "a", "o2": "b"}
    with db.sessions() as session:
        assert session.scalars(select(CustomerAlias)).all() == []
    # b's own audience events apply again (they were ignored while it was an alias)
    consume(db, [segment_event("b", lifecycle="silent")])
    with db.sessions() as session:
        row = session.get(AudienceMember, "b")
        assert row is not None and row.lifecycle_stage == "silent"
