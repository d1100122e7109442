"""A full rescoring reads and scores in pages and writes its changes in chunks (bounded
memory); the result is the same as all at once."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from services.segment import repository, rescoring
from tests.conftest import outbox_events
from tests.segment.helpers import NOW, database, recorded
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
