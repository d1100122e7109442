"""Whether the broker answers, as this process last saw it, logged once per change.

During a broker outage every client retries: the relay every few seconds, each
consumer on reconnect, kafka-python itself on every connection attempt. Logged per
retry that filled the logs with identical ERROR lines (issue 12). Instead the parts
that talk to the broker report what they saw to one :class:`BrokerState`, which logs
``broker unreachable`` once when the broker goes away and ``broker reachable again``
once when it is back, and sets the ``crm_broker_up`` gauge; :class:`OutageLogFilter`
lets each distinct kafka-python warning through once per outage.
"""

from __future__ import annotations

import logging
import threading
import time

from shared import metrics

log = logging.getLogger(__name__)


class OutageLogFilter(logging.Filter):
    """Passes each distinct kafka-python warning or error once until the broker is back
    (attach it to a handler: a logger's own filters do not see its children's records)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith("kafka"):
            return True
        key = (record.name, str(record.msg))
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()


class BrokerState:
    """The process's view of the broker: up or down, since when, and why."""

    def __init__(self, service: str = "") -> None:
        self.service = service
        self.up: bool | None = None  # unknown until someone reports
        self.since = time.monotonic()
        self.reason: str | None = None
        #: how many times the broker went away (as this process saw it)
        self.outages = 0
        self._lock = threading.Lock()

    def reachable(self) -> None:
        """Report a successful exchange with the broker."""
        with self._lock:
            if self.up is True:
                return
            was_down = self.up is False
            down_for = time.monotonic() - self.since
            self.up, self.since, self.reason = True, time.monotonic(), None
        metrics.BROKER_UP.labels(self.service).set(1)
        KAFKA_LOG_FILTER.reset()
        if was_down:
            log.warning("%s: broker reachable again after %.1fs", self.service, down_for)

    def unreachable(self, who: str, exc: BaseException | str) -> None:
        """Report a failed exchange; logged only when the broker was not already down."""
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        with self._lock:
            if self.up is False:
                return
            self.up, self.since, self.reason = False, time.monotonic(), f"{who}: {reason}"
            self.outages += 1
        metrics.BROKER_UP.labels(self.service).set(0)
        log.warning(
            "%s: broker unreachable (%s: %s); retrying quietly until it is back",
            self.service,
            who,
            reason,
        )

    @property
    def down(self) -> bool:
        return self.up is False


#: on the process's log handler (:func:`shared.logs.configure_logging`); reset whenever a
#: :class:`BrokerState` sees the broker again
KAFKA_LOG_FILTER = OutageLogFilter()
