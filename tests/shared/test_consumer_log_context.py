"""Log lines written while the consumer loop handles a record carry that record's event id
and origin (one-by-one handling) or its batch (batch handling)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from devtools.testing import wait_for
from shared.bus import Inbound
from shared.logs import current_context
from tests.shared.test_bus import (  # noqa: F401 - db and publisher are fixtures
    db,
    make_loop,
    on_orders,
    order_event,
    publisher,
    record_orders,
    seen_ids,
)

pytestmark = pytest.mark.kafka


def test_handling_runs_inside_the_record_context(broker, namespace, db, publisher) -> None:  # noqa: F811
    contexts: list[tuple[str, dict[str, str]]] = []

    def picky(session: Session, messages: list[Inbound], deps: None) -> None:
        for message in messages:
            contexts.append((message.event.data.order_id, current_context()))
            if message.event.data.order_id == "bad":
                raise ValueError("order 'bad' is not acceptable")
            record_orders(session, [message], deps)

    events = [order_event("ok-1"), order_event("bad"), order_event("ok-2")]
    publisher.publish_all([("crm.orders.v1", "c1", e.model_dump_json().encode()) for e in events])
    loop = make_loop(broker, namespace, db, publisher, batch_handler=on_orders(picky))
    loop.start()
    try:
        wait_for(lambda: len(seen_ids(db)) == 2 and loop.deadlettered_count == 1, what="results")
    finally:
        loop.stop()
    bad_id = str(events[1].event_id)
    alone = [ctx for order_id, ctx in contexts if order_id == "bad" and "event_id" in ctx]
    assert alone, contexts  # isolated after its batch failed: handled one by one
    assert all(ctx["event_id"] == bad_id for ctx in alone), (bad_id, alone)
    assert all("crm.orders.v1[" in ctx["record"] and "@" in ctx["record"] for ctx in alone)
    batched = [ctx for _, ctx in contexts if "event_id" not in ctx]
    assert batched and all(" +" in ctx["batch"] for ctx in batched)
    assert current_context() == {}  # nothing leaks out of the loop's thread
