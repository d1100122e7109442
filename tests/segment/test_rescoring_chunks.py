"""A full rescoring reads and scores in pages and writes its changes in chunks (bounded
memory); the result is the same as all at once."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from services.segment import repository, rescoring
from tests.conftest import outbox_events
from tests.segment.helpers import NOW, database, order, recorded
from tests.segment.test_paths import feed, history, stored_state


def published(db, after: int) -> list[dict]:
    """The segment.changed payloads published after the first ``after`` events, by customer."""
    changes = [e.data.model_dump(mode="json") for e in outbox_events(db)[after:]]
    return sorted(changes, key=lambda c: c["customer_id"])


def test_a_rescoring_in_pages_and_chunks_equals_one_at_once(
    db_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, _ = history(seed=5, customers=90)
    inbound = [recorded(o) for o in events]
    chunked = database(db_url)
    whole = database(f"sqlite:///{tmp_path / 'whole.db'}")
    feed(chunked, inbound)
    feed(whole, inbound)
    before = len(outbox_events(chunked))
    assert before == len(outbox_events(whole))
    later = NOW + timedelta(days=40)  # the sweep moves many customers between stages

    monkeypatch.setattr(rescoring, "RESCORING_WRITE_CHUNK", 7)
    monkeypatch.setattr(repository, "RESCORING_PAGE", 11)  # pages of 11 customers
    with chunked.unit_of_work() as session:
        in_chunks = rescoring.rescore_all(session, later)
    monkeypatch.setattr(rescoring, "RESCORING_WRITE_CHUNK", 1_000_000)
    monkeypatch.setattr(repository, "RESCORING_PAGE", 1_000_000)
    with whole.unit_of_work() as session:
        at_once = rescoring.rescore_all(session, later)

    assert in_chunks.changed == at_once.changed > 3 * 7  # several chunks were written
    assert in_chunks.customers == at_once.customers > 5 * 11  # several pages were read
    # the cut points come from everyone, not from a page
    assert in_chunks.cut_points == at_once.cut_points
    pd.testing.assert_frame_equal(stored_state(chunked), stored_state(whole))
    assert published(chunked, before) == published(whole, before)
    assert len(published(chunked, before)) == in_chunks.changed


def test_cut_point_inputs_keep_each_last_purchase_on_its_local_day(db_url: str) -> None:
    """The lean read of the cut points takes instants as numbers: the local calendar day
    of each must be the one the full read's parsed text gives, at a local midnight too."""
    from datetime import UTC, datetime

    from services.segment.local_days import local_day_numbers
    from services.segment.repository import CUSTOMERS, Customers
    from shared.db import driver_connection, driver_time

    midnight = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)  # 00:00 in Asia/Shanghai
    moments = {
        "c-midnight": midnight,
        "c-just-before": midnight - timedelta(microseconds=1),
        "c-rounding": midnight - timedelta(microseconds=300),  # julianday rounds to ms
        "c-second": midnight + timedelta(seconds=1),
    }
    db = database(db_url)
    feed(db, [recorded(order(f"o-{c}", c, days_ago=3)) for c in moments])
    with db.unit_of_work() as session:
        connection, mark = driver_connection(session)
        for customer, moment in moments.items():
            connection.exec_driver_sql(
                f"UPDATE {CUSTOMERS.name} SET last_order_at = {mark} WHERE customer_id = {mark}",
                (driver_time(moment, mark), customer),
            )
    with db.unit_of_work() as session:
        customers = Customers(session)
        full = customers.rescoring_inputs(with_attributes=False).set_index("customer_id")
        lean = customers.cut_point_inputs()
    timezone = "Asia/Shanghai"
    expected = sorted(local_day_numbers(full.loc[list(moments), "last_order_at"], timezone))
    assert sorted(local_day_numbers(lean["last_order_at"], timezone)) == expected
    # and the days are the true ones: two customers before the midnight, two after
    first = local_day_numbers(pd.Series([midnight]), timezone)[0]
    assert expected == [first - 1, first - 1, first, first]
