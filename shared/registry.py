"""A consuming service's handler registry: ``{event class: handler}``, in one place.

Each service's ``handlers.py`` declares one :class:`Registry`. The event types a consumer
acts on and the topics it subscribes to are derived from it (every envelope class knows
its topic: ``EnvelopeBase.topic``), so nothing is kept in a second list beside the
dispatch. A handler is a plain function ``(session, messages, deps)`` that takes a run of
consecutive messages of the types it is registered for: the measured batch fast paths
(one load and one write per poll batch) stay batch handlers, and one function may be
registered for several event classes (consecutive messages for the same function are
one run, in arrival order).

Where a batch applies events of several types into one piece of state (loaded once,
written once), each type is registered as a step of a :class:`BatchKind`:
``{ProfileMergedEvent: AUDIENCE.step(apply_merge)}``. A run of consecutive messages whose
steps belong to one kind is applied into one context: the kind's ``start`` opens it (it
sees the whole run, to load what the run touches), each message's own step applies it in
arrival order, ``finish`` writes it once and returns the run's result. So a type is added
to a consumer in one place, with no second dispatch on event types inside the batch.

Event classes on the subscribed topics that the service leaves alone are declared in
``ignores``: :meth:`Registry.unclaimed` names every event class on those topics that is
neither handled nor ignored, and each service's test asserts it is empty, so an event
type added to a topic fails that test until each consumer decides (it is never skipped
by oversight). At run time an unregistered type (a newer producer's) is skipped, as the
consumer loop always did (forward compatibility).

Topics whose records carry no ``type`` (ingest's raw topics: bare objects from outside
producers) have a :class:`TopicRegistry` instead: ``{topic: handler}``, the same handlers,
its subscribed topics derived from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from shared.consumer_loop import Inbound
from shared.events import EVENT_TYPES, EnvelopeBase

D = TypeVar("D")
C = TypeVar("C")

#: ``(session, a run of consecutive messages, the service's dependencies)``; a return value
#: is handed back by :meth:`Registry.dispatch` (campaign collects its trigger transitions)
RegisteredHandler = Callable[[Session, list[Inbound], D], Any]


class BatchKind(Generic[D, C]):
    """Per-event steps that apply into one context per run (see the module docstring).

    ``start(session, run, deps)`` opens the context, ``prepare(context)`` (optional) runs
    after every step's ``note`` saw the run (the loads that need what the run touches),
    ``finish(context)`` writes it and returns the run's result.
    """

    def __init__(
        self,
        start: Callable[[Session, list[Inbound], D], C],
        finish: Callable[[C], Any],
        *,
        prepare: Callable[[C], None] | None = None,
    ) -> None:
        self.start = start
        self.finish = finish
        self.prepare = prepare

    def step(
        self,
        apply: Callable[[C, Inbound], None],
        *,
        note: Callable[[C, Inbound], None] | None = None,
    ) -> Step[D, C]:
        """A registry entry: ``apply(context, message)`` applies one message of the run;
        ``note(context, message)`` (optional) sees it first, before ``prepare``."""
        return Step(self, apply, note)

    def run(self, session: Session, messages: list[Inbound], deps: D, steps: StepOf[D]) -> Any:
        """Apply one run: open, note, prepare, apply each message in order, finish."""
        context = self.start(session, messages, deps)
        found = [(steps(m), m) for m in messages]
        if self.prepare is not None:
            for step, message in found:
                if step.note is not None:
                    step.note(context, message)
            self.prepare(context)
        for step, message in found:
            step.apply(context, message)
        return self.finish(context)


class Step(Generic[D, C]):
    """One event class's step of a :class:`BatchKind` (made by :meth:`BatchKind.step`)."""

    __slots__ = ("apply", "kind", "note")

    def __init__(
        self,
        kind: BatchKind[D, C],
        apply: Callable[[C, Inbound], None],
        note: Callable[[C, Inbound], None] | None,
    ) -> None:
        self.kind = kind
        self.apply = apply
        self.note = note


StepOf = Callable[[Inbound], Step[D, Any]]
#: a registry entry: a handler of a run, or one step of a batch kind
Entry = RegisteredHandler[D] | Step[D, Any]


def envelope_classes() -> list[type[EnvelopeBase]]:
    """Every envelope class of the contract: the ``Event`` union, key records and usage,
    export requests and parts."""
    from shared.apikeys import ApiKeyRecordedEvent, ApiKeyUsedEvent
    from shared.exports import ExportPartRecordedEvent, ExportRequestedEvent

    return [
        *EVENT_TYPES.values(),
        ApiKeyRecordedEvent,
        ApiKeyUsedEvent,
        ExportRequestedEvent,
        ExportPartRecordedEvent,
    ]


def event_type_of(cls: type[EnvelopeBase]) -> str:
    """The wire ``type`` string of an envelope class."""
    value = cls.model_fields["type"].default
    if not isinstance(value, str):
        raise TypeError(f"{cls.__name__} has no fixed event type")
    return value


class Registry(Generic[D]):
    """``{event class: handler}`` plus the classes deliberately left alone."""

    def __init__(
        self,
        handlers: Mapping[type[EnvelopeBase], Entry[D]],
        *,
        ignores: Iterable[type[EnvelopeBase]] = (),
    ) -> None:
        self.handlers: dict[type[EnvelopeBase], Entry[D]] = dict(handlers)
        self.ignores = frozenset(ignores)
        for cls in (*self.handlers, *self.ignores):
            if not isinstance(getattr(cls, "topic", None), str):
                raise TypeError(f"{cls.__name__} declares no topic")
        both = self.ignores & set(self.handlers)
        if both:
            raise ValueError(f"both handled and ignored: {sorted(c.__name__ for c in both)}")
        self._by_type = {event_type_of(cls): fn for cls, fn in self.handlers.items()}

    @property
    def event_types(self) -> frozenset[str]:
        """The wire types this registry acts on."""
        return frozenset(self._by_type)

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics to subscribe to, in registration order."""
        return tuple(dict.fromkeys(cls.topic for cls in self.handlers))

    def on_topics(self, *topics: str) -> Registry[D]:
        """The part of this registry whose events travel on ``topics`` (one consumer loop)."""
        return Registry(
            {c: fn for c, fn in self.handlers.items() if c.topic in topics},
            ignores=[c for c in self.ignores if c.topic in topics],
        )

    def without_topics(self, *topics: str) -> Registry[D]:
        """The part of this registry whose events travel on none of ``topics``."""
        return self.on_topics(*(t for t in self.topics if t not in topics))

    def unclaimed(
        self, known: Iterable[type[EnvelopeBase]] | None = None
    ) -> set[type[EnvelopeBase]]:
        """Event classes on the subscribed topics that are neither handled nor ignored
        (of ``known``; default: every envelope class of the contract)."""
        topics = set(self.topics)
        claimed = set(self.handlers) | self.ignores
        classes = envelope_classes() if known is None else known
        return {c for c in classes if c.topic in topics and c not in claimed}

    def runs(
        self, messages: Sequence[Inbound]
    ) -> Iterator[tuple[RegisteredHandler[D] | BatchKind[D, Any], list[Inbound]]]:
        """Consecutive registered messages that go to one handler (or to steps of one batch
        kind), in arrival order; messages of other types are skipped."""
        current: RegisteredHandler[D] | BatchKind[D, Any] | None = None
        run: list[Inbound] = []
        for message in messages:
            entry = self._by_type.get(message.event_type)
            if entry is None:
                continue
            target = entry.kind if isinstance(entry, Step) else entry
            if target is not current and run:
                assert current is not None
                yield current, run
                run = []
            current = target
            run.append(message)
        if run:
            assert current is not None
            yield current, run

    def _step(self, message: Inbound) -> Step[D, Any]:
        entry = self._by_type[message.event_type]
        assert isinstance(entry, Step)
        return entry

    def dispatch(self, session: Session, messages: Sequence[Inbound], deps: D) -> list[Any]:
        """Hand each run to its handler or batch kind; their return values, in order."""
        return [
            target.run(session, run, deps, self._step)
            if isinstance(target, BatchKind)
            else target(session, run, deps)
            for target, run in self.runs(messages)
        ]

    def batch_handler(self, deps: D) -> Callable[[Session, list[Inbound]], None]:
        """The consumer loop's batch handler for this registry."""

        def handle(session: Session, messages: list[Inbound]) -> None:
            self.dispatch(session, messages, deps)

        return handle


class TopicRegistry(Generic[D]):
    """``{topic: handler}`` for topics whose records carry no event type.

    A poll batch's messages of one topic go to its handler as one run, in arrival order
    (the runs in the order their topics first arrive): records of different topics are
    independent, and each topic's records are then validated and stored together.
    """

    def __init__(self, handlers: Mapping[str, RegisteredHandler[D]]) -> None:
        self.handlers: dict[str, RegisteredHandler[D]] = dict(handlers)

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics to subscribe to, in registration order."""
        return tuple(self.handlers)

    def runs(
        self, messages: Sequence[Inbound]
    ) -> Iterator[tuple[RegisteredHandler[D], list[Inbound]]]:
        """Each registered topic's messages with its handler; other topics' are skipped."""
        by_topic: dict[str, list[Inbound]] = {}
        for message in messages:
            if message.topic in self.handlers:
                by_topic.setdefault(message.topic, []).append(message)
        for topic, run in by_topic.items():
            yield self.handlers[topic], run

    def dispatch(self, session: Session, messages: Sequence[Inbound], deps: D) -> list[Any]:
        """Hand each run to its handler; the handlers' return values, in order."""
        return [handler(session, run, deps) for handler, run in self.runs(messages)]

    def batch_handler(self, deps: D) -> Callable[[Session, list[Inbound]], None]:
        """The consumer loop's batch handler for this registry."""

        def handle(session: Session, messages: list[Inbound]) -> None:
            self.dispatch(session, messages, deps)

        return handle
