"""A record is dead-lettered for a transient fault only while the database answered before and
after the attempt: a database that comes back while an attempt fails is not a poison record."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from sqlalchemy.exc import OperationalError

from shared.consumer_loop import ConsumerLoop


class ReturningDatabase:
    """Down for the first ``down_attempts`` transactions; comes back *during* the last of
    them (its ping answers from then on), as a restarted database does."""

    def __init__(self, down_attempts: int) -> None:
        self.down_attempts = down_attempts
        self.attempts = 0
        self.up = False

    def ping(self) -> None:
        if not self.up:
            raise OperationalError("SELECT 1", {}, Exception("not accepting connections"))

    @contextlib.contextmanager
    def unit_of_work(self) -> Iterator[Any]:
        self.attempts += 1
        if self.attempts <= self.down_attempts:
            if self.attempts == self.down_attempts:
                self.up = True  # back while this attempt fails
            raise OperationalError("BEGIN", {}, Exception("not accepting connections"))
        yield SimpleNamespace()


def loop_over(db: ReturningDatabase) -> tuple[ConsumerLoop, list[str], list[str]]:
    applied: list[str] = []
    dead: list[str] = []
    loop = ConsumerLoop(
        name="outage-race",
        bootstrap_servers="127.0.0.1:1",
        group_id="g",
        topics=["crm.orders.v1"],
        db=db,  # type: ignore[arg-type]
        publisher=None,  # type: ignore[arg-type]
        batch_handler=lambda session, messages: applied.extend(m.dedup_id for m in messages),
        max_attempts=3,
        backoff_base=0.0,
        backoff_max=0.0,
    )
    loop._handle_batch = lambda session, messages: applied.extend(  # type: ignore[method-assign]
        m.dedup_id for m in messages
    )
    loop._dead_letter = lambda message, *rest: dead.append(message.dedup_id)  # type: ignore[method-assign,assignment]
    return loop, applied, dead


def test_a_database_back_during_the_last_attempt_does_not_dead_letter_the_record() -> None:
    db = ReturningDatabase(down_attempts=5)  # past max_attempts (3), back during the fifth
    loop, applied, dead = loop_over(db)
    loop._process_one_record(
        SimpleNamespace(
            dedup_id="crm.orders.v1/0/7", origin="crm.orders.v1[0]@7", checkpoint_after_commit=False
        )
    )  # type: ignore[arg-type]
    assert dead == []
    assert applied == ["crm.orders.v1/0/7"] and db.attempts == 6


def test_a_record_failing_while_the_database_answers_is_dead_lettered() -> None:
    class AnsweringButFailing(ReturningDatabase):
        def __init__(self) -> None:
            super().__init__(down_attempts=1000)
            self.up = True

    db = AnsweringButFailing()
    loop, applied, dead = loop_over(db)
    loop._process_one_record(
        SimpleNamespace(
            dedup_id="crm.orders.v1/0/8", origin="crm.orders.v1[0]@8", checkpoint_after_commit=False
        )
    )  # type: ignore[arg-type]
    assert dead == ["crm.orders.v1/0/8"] and applied == []
    assert db.attempts == 3  # max_attempts, not more
