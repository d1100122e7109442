"""A consumer under load gathers small polls into bigger batches; a quiet one does not wait."""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace
from typing import Any

from kafka import TopicPartition

from shared.consumer_loop import ConsumerLoop

Record = namedtuple("Record", "topic partition offset")
TP = TopicPartition("crm.orders.v1", 0)


class ScriptedConsumer:
    """kafka-python's ``poll`` answering from a script; records each call's arguments."""

    def __init__(self, polls: list[dict[Any, list[Record]]]) -> None:
        self.polls = polls
        self.calls: list[tuple[int, int | None]] = []

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Record]]:
        self.calls.append((timeout_ms, max_records))
        return self.polls.pop(0) if self.polls else {}


def records(*offsets: int) -> dict[Any, list[Record]]:
    return {TP: [Record(TP.topic, 0, o) for o in offsets]}


def scripted_loop(
    polls: list[dict[Any, list[Record]]], gather_ms: int, max_poll_records: int = 1000
) -> tuple[ConsumerLoop, list[list[int]]]:
    loop = ConsumerLoop(
        name="gather-test",
        bootstrap_servers="127.0.0.1:1",
        group_id="g",
        topics=["crm.orders.v1"],
        db=None,  # type: ignore[arg-type]  # never reached: batches are recorded below
        publisher=None,  # type: ignore[arg-type]
        batch_handler=lambda session, messages: None,
        max_poll_records=max_poll_records,
        gather_ms=gather_ms,
    )
    handled: list[list[int]] = []
    loop._consumer = ScriptedConsumer(polls)  # type: ignore[assignment]
    loop._decode = lambda record: SimpleNamespace(offset=record.offset)  # type: ignore[method-assign,assignment,return-value]
    loop._process = lambda messages: handled.append([m.offset for m in messages])  # type: ignore[method-assign,assignment]
    loop._commit_offsets = lambda consumer, offsets: None  # type: ignore[method-assign,assignment]
    loop._record_lag = lambda consumer, offsets: None  # type: ignore[method-assign,assignment]
    loop._record_idle_lag = lambda consumer: None  # type: ignore[method-assign,assignment]
    return loop, handled


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_small_polls_under_load_are_gathered_in_order_and_a_quiet_consumer_does_not_wait() -> None:
    polls = [
        records(0),  # quiet so far: handled at once
        records(*range(1, 150)),  # 150 records in the first half second: under load
        records(150),  # small, under load: gathers what the next poll brings
        records(151, 152),
        records(*range(153, 163)),  # a tenth of max_poll_records: not gathered
        {},  # a quiet half second: no longer under load
        records(163),  # handled at once
    ]
    loop, handled = scripted_loop(polls, gather_ms=5, max_poll_records=100)
    clock = Clock()
    loop._clock = clock  # type: ignore[method-assign]
    loop._window_start = 0.0
    consumer = loop._consumer
    for advance in (0.1, 0.45, 0.1, 0.1, 0.5, 0.1):  # seconds before each poll returns
        clock.now += advance
        loop.poll_once()
    assert handled == [[0], list(range(1, 150)), [150, 151, 152], list(range(153, 163)), [163]]
    # the gathering poll waits for nothing more and asks for what is left of a batch
    assert consumer.calls == [  # type: ignore[union-attr]
        (200, None),
        (200, None),
        (200, None),
        (0, 99),
        (200, None),
        (200, None),
        (200, None),
    ]
    assert loop._next_offsets[TP] == 164


def test_without_gather_ms_every_poll_is_handled_as_it_came() -> None:
    loop, handled = scripted_loop([records(0), records(*range(1, 400)), records(400)], gather_ms=0)
    loop._clock = Clock()  # type: ignore[method-assign]
    for _ in range(3):
        loop._clock.now += 0.3  # type: ignore[attr-defined]
        loop.poll_once()
    assert handled == [[0], list(range(1, 400)), [400]]
