"""What the end-to-end bench observes from outside the services: CPU per process from /proc,
and every consumer group's lag from the broker."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from shared import manifest, topics

SERVICES = manifest.NAMES


# --------------------------------------------------------------------------- /proc


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> dict[int, str]:
    """``{pid: label}`` of a process tree: a service's name, ``broker`` or ``supervisor``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(_stat(int(stat.parent.name))[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    labels = {}
    for pid in tree:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        label = "supervisor" if pid == root else "other"
        for name in SERVICES:
            if f"services.{name}" in command:
                label = name
        if "tansu" in command:
            label = "broker"
        labels[pid] = label
    return labels


def cpu_by_label(root: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    for pid, label in descendants(root).items():
        totals[label] = totals.get(label, 0.0) + cpu_seconds(pid)
    return totals


# --------------------------------------------------------------------------- lag


class LagMonitor:
    """Every consumer group's lag: committed offsets against high watermarks.

    The high watermarks come from fetch responses (``KafkaConsumer.highwater``): this broker's
    ListOffsets can answer the base offset of the last batch instead. The monitor's consumer
    sits at the last high watermark it saw, so each fetch carries at most one new batch per
    partition, not the stream.
    """

    #: the consumer groups of the default deployment that read the orders topic
    ORDER_GROUPS = ("crm-profile", "crm-segment", "crm-campaign")

    def __init__(self, bootstrap: str, order_groups: tuple[str, ...] = ORDER_GROUPS) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        self.order_groups = order_groups

        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=1,
            fetch_max_wait_ms=20,
        )
        self.high: dict[Any, int] = {}
        #: every group seen so far, with the partitions it has committed offsets for
        self.known: dict[str, set[Any]] = {}

    def highwaters(self, partitions: set[Any]) -> dict[Any, int]:
        if set(self.consumer.assignment()) != partitions:
            self.consumer.assign(sorted(partitions, key=lambda tp: (tp.topic, tp.partition)))
            for tp in partitions:
                self.consumer.seek(tp, self.high.get(tp, 0))
        for _ in range(20):
            self.consumer.poll(timeout_ms=50, max_records=10_000)
            marks = {tp: self.consumer.highwater(tp) for tp in partitions}
            if all(m is not None for m in marks.values()):
                break
        for tp, mark in marks.items():
            if mark is not None:
                self.high[tp] = mark
                self.consumer.seek(tp, mark)
        return dict(self.high)

    def lags(self) -> tuple[dict[str, int], int]:
        """``({group: lag}, orders in the orders topic)``."""
        from kafka import TopicPartition

        groups = [g["group_id"] for g in self.admin.list_groups()]
        committed = {g: self.admin.list_group_offsets(g)[g] for g in groups}
        partitions = {tp for offsets in committed.values() for tp in offsets}
        partitions |= {
            TopicPartition(topics.ORDERS, p)
            for p in (self.consumer.partitions_for_topic(topics.ORDERS) or ())
        }
        high = self.highwaters(partitions)
        lags = {
            g: sum(max(high.get(tp, 0) - meta.offset, 0) for tp, meta in offsets.items())
            for g, offsets in committed.items()
        }
        # A group the broker did not list this time (it was rebalancing, or its member was
        # being replaced), or that lost a partition's offset, is not known to be caught up;
        # nor is a group that reads the orders before it committed an offset on each of
        # their partitions: the embedded broker takes seconds to let a group join, and a
        # bench that did not wait for it measured the deployment without that consumer.
        orders_partitions = {tp for tp in high if tp.topic == topics.ORDERS}
        expected = {group: set(seen) for group, seen in self.known.items()}
        for group in self.order_groups:
            expected.setdefault(group, set()).update(orders_partitions)
        for group, wanted in expected.items():
            if not wanted <= set(committed.get(group, {})):
                lags[group] = max(lags.get(group, 0), 1)
        for group, offsets in committed.items():
            self.known.setdefault(group, set()).update(offsets)
        orders = sum(m for tp, m in high.items() if tp.topic == topics.ORDERS)
        return lags, orders

    def wait_caught_up(self, orders: int, timeout: float = 900) -> float:
        """When the orders topic holds ``orders`` and every group's lag is zero (seen twice,
        0.3 s apart: a service's own outbox may publish just after its consumer commits)."""
        deadline = time.monotonic() + timeout
        first_zero: float | None = None
        #: per group, since when its lag has been zero with every order stored (perf_counter)
        self.caught_up_at: dict[str, float] = {}
        while time.monotonic() < deadline:
            lags, stored = self.lags()
            now = time.perf_counter()
            for group, lag in lags.items():
                if stored >= orders and not lag:
                    self.caught_up_at.setdefault(group, now)
                else:
                    self.caught_up_at.pop(group, None)
            if stored >= orders and lags and not any(lags.values()):
                if first_zero is not None:
                    return first_zero
                first_zero = now
                time.sleep(0.3)
                continue
            first_zero = None
            time.sleep(0.1)
        raise RuntimeError(f"not caught up in {timeout:.0f} s: lags {lags}, orders {stored}")

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()
