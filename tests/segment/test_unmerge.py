"""profile.unmerged in segment: the restored customer's orders count for it again."""

from __future__ import annotations

from shared.events import ProfileUnmergedEvent, ProfileUnmergedPayload
from tests.segment.helpers import database, inbound, merged, order, recorded
from tests.segment.test_paths import feed, outbox_events, stored_state


def unmerged(survivor: str, restored: str, orders: list[str]) -> object:
    return inbound(
        ProfileUnmergedEvent(
            source="test",
            key=survivor,
            data=ProfileUnmergedPayload(
                merge_id="m1",
                survivor_id=survivor,
                restored_ids=[restored],
                customer_ids={restored: [restored]},
                order_ids={restored: orders},
            ),
        )
    )


def test_unmerge_splits_the_orders_back_and_publishes_both(db_url: str) -> None:
    db = database(db_url)
    feed(
        db,
        [
            recorded(order("o1", "a", days_ago=2, amount="10.00")),
            recorded(order("o2", "b", days_ago=5, amount="20.00")),
            recorded(order("o3", "b", days_ago=6, amount="30.00")),
        ],
    )
    feed(db, [merged("a", "b")])
    state = stored_state(db).set_index("customer_id")
    assert list(state.index) == ["a"] and state.loc["a", "frequency"] == 3
    before = len(outbox_events(db))

    feed(db, [unmerged("a", "b", ["o2", "o3"])])
    feed(db, [unmerged("a", "b", ["o2", "o3"])])  # delivered twice: the same
    state = stored_state(db).set_index("customer_id")
    assert sorted(state.index) == ["a", "b"]
    assert state.loc["a", "frequency"] == 1 and state.loc["a", "monetary_e4"] == 100_000
    assert state.loc["b", "frequency"] == 2 and state.loc["b", "monetary_e4"] == 500_000
    changed = {e.data.customer_id for e in outbox_events(db)[before:]}
    assert changed == {"a", "b"}
    # b's next order counts for b, not for the survivor (no alias any more)
    feed(db, [recorded(order("o4", "b", days_ago=1, amount="5.00"))])
    state = stored_state(db).set_index("customer_id")
    assert state.loc["b", "frequency"] == 3 and state.loc["a", "frequency"] == 1
    db.dispose()
