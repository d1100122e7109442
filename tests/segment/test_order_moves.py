"""An order that moves to another customer changes both: random moves, refunds, duplicates
and reordered batches against a plain model of "the newest version of each order wins"."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import orjson
from sqlalchemy import select

from services.segment import per_event
from services.segment.models import CustomerScore
from shared.bus import PLATFORM_TABLES
from shared.events import VALID_PURCHASE_STATUSES, OrderStatus
from tests.segment.helpers import NOW, database, order, recorded

SCENARIOS = 30
STATUSES = ["paid", "paid", "completed", "refunded", "partially_refunded", "cancelled"]


def published(session: Any) -> dict[str, dict[str, Any]]:
    """The last ``segment.changed`` data queued for each customer, in outbox order."""
    outbox = PLATFORM_TABLES.tables["outbox"]
    last: dict[str, dict[str, Any]] = {}
    for value in session.execute(select(outbox.c.value).order_by(outbox.c.id)).scalars():
        data = orjson.loads(value)["data"]
        last[data["customer_id"]] = data
    return last


def test_random_order_moves_refunds_and_duplicates_leave_no_ghost(db_url: str) -> None:
    db = database(db_url)
    events_checked = moves = ghosts_possible = 0
    try:
        for scenario in range(SCENARIOS):
            rng = random.Random(scenario)
            customers = [f"s{scenario}-c{i}" for i in range(4)]
            latest: dict[str, tuple[int, str, str]] = {}  # order -> (version, owner, status)
            sent: list[Any] = []
            for _step in range(rng.randint(6, 14)):
                order_id = f"s{scenario}-o{rng.randint(0, 4)}"
                version = latest.get(order_id, (-1, "", ""))[0] + 1
                owner = rng.choice(customers)
                if order_id in latest and latest[order_id][1] != owner:
                    moves += 1
                status = rng.choice(STATUSES)
                refunded = "40.00" if status == "partially_refunded" else "0"
                if status == "refunded":
                    refunded = "100.00"
                message = recorded(
                    order(
                        order_id,
                        owner,
                        days_ago=5,
                        status=status,
                        refunded=refunded,
                        version_minutes=version,
                    )
                )
                latest[order_id] = (version, owner, status)
                sent.append(message)
                if rng.random() < 0.3:  # delivered twice
                    sent.append(rng.choice(sent))
            # split into batches, with some disorder across them
            if rng.random() < 0.3:
                rng.shuffle(sent)
            cuts = sorted(rng.sample(range(1, len(sent)), k=min(2, len(sent) - 1)))
            for start, end in zip([0, *cuts], [*cuts, len(sent)], strict=True):
                with db.unit_of_work() as session:
                    per_event.apply_messages(session, sent[start:end], NOW)
            owners: dict[str, int] = defaultdict(int)
            for _, owner, status in latest.values():
                owners[owner] += OrderStatus(status) in VALID_PURCHASE_STATUSES
            with db.sessions() as session:
                rows = {
                    r.customer_id: r
                    for r in session.execute(
                        select(CustomerScore).where(CustomerScore.customer_id.in_(customers))
                    ).scalars()
                }
                last = published(session)
            holding = {o for _, o, _ in latest.values()}
            # a row for exactly the customers holding an order, with F as the model says
            assert set(rows) == holding, (scenario, set(rows), holding)
            for customer_id, row in rows.items():
                assert row.frequency == owners[customer_id], (scenario, customer_id)
            # what profile and campaign were told ends in the same state
            for customer_id in customers:
                event = last.get(customer_id)
                if customer_id in holding:
                    if event is not None:
                        events_checked += 1
                        assert not event["removed"], (scenario, customer_id)
                        assert event["to"]["frequency"] == owners[customer_id]
                elif event is not None:
                    ghosts_possible += 1
                    events_checked += 1
                    assert event["removed"], (scenario, customer_id, event)
    finally:
        db.dispose()
    assert moves > 20 and ghosts_possible > 5
    print(
        f"\n{SCENARIOS} scenarios, {moves} order moves: {events_checked} final segment.changed "
        f"checked, {ghosts_possible} customers left without orders all told `removed`, 0 ghosts"
    )
