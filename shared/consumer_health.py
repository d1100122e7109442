"""How a consumer that stopped making progress is told apart from one that is idle.

A group member can be stuck while its ``poll()`` keeps returning empty: the embedded
broker was seen answering JoinGroup with a dead leader and SyncGroup with error 27
(REBALANCE_IN_PROGRESS) for over 16 minutes, so the member never got a partition and
nothing was consumed, logged or measured. :class:`ProgressWatch` notices the two
shapes of that: *no partition assignment* for longer than a bound, and *no progress
while behind* (the broker holds records past the member's position, yet none came)
for longer than the bound. The consumer loop then reports it (``/readyz``, the
``crm_consumer_stalled`` gauge, one log line) and replaces the member with a fresh
one, with backoff between replacements (:func:`rebuild_delay`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: how long a member may go without an assignment, or without progress while behind,
#: before it is declared stalled (``CRM_CONSUMER_STALL_SECONDS``); a healthy rebalance on
#: the embedded broker takes 3-6 s (one session timeout), a slow one under load ~15 s
DEFAULT_STALL_SECONDS = 30.0


@dataclass
class ProgressWatch:
    """Observes one group member after each poll and says when it is stalled.

    ``observe`` takes what the poll saw: the partitions assigned, for each the next
    offset the member would consume and the broker's high watermark (either may be
    unknown: ``None``), and how many records the poll returned.
    """

    stall_after: float = DEFAULT_STALL_SECONDS
    clock: Callable[[], float] = time.monotonic
    #: why the member is stalled, or ``None`` while it is healthy
    reason: str | None = None
    _since_assigned: float | None = None
    _unassigned_since: float = field(default=0.0)
    _behind_since: float | None = None

    def __post_init__(self) -> None:
        self._unassigned_since = self.clock()

    def observe(
        self,
        assignment: Mapping[object, tuple[int | None, int | None]],
        records: int,
    ) -> str | None:
        """Update the watch after one poll; returns the stall reason (or ``None``)."""
        now = self.clock()
        if not assignment:
            self._behind_since = None
            waited = now - self._unassigned_since
            self.reason = (
                f"no partition assignment for {waited:.0f}s" if waited > self.stall_after else None
            )
            return self.reason
        self._unassigned_since = now
        behind = any(
            position is not None and highwater is not None and highwater > position
            for position, highwater in assignment.values()
        )
        if records or not behind:
            self._behind_since = None
            self.reason = None
            return None
        if self._behind_since is None:
            self._behind_since = now
        waited = now - self._behind_since
        if waited > self.stall_after:
            self.reason = f"no progress for {waited:.0f}s while behind the broker"
        else:
            self.reason = None
        return self.reason


def rebuild_delay(consecutive_stalls: int, base: float = 1.0, ceiling: float = 60.0) -> float:
    """Seconds to wait before the ``consecutive_stalls``-th fresh member (1, 2, 4, ... 60)."""
    return float(min(base * 2 ** max(consecutive_stalls - 1, 0), ceiling))
