"""Read-modify-write of a profile without lost updates: lock first, then read.

A profile is one JSON document that every writer reads, changes in Python and writes
back: an operator's PATCH, a tag, the contact policy, a merge, and the consumer's
batches. Two writers that both read before either wrote lose one of the changes (20
parallel tag POSTs kept 2 tags; 8 parallel PATCHes of different fields kept 2).

The rule, chosen over a version column with retry or ``If-Match`` (which would turn
a harmless race between two operators into a 412 for one of them, and would need a
retry loop around every consumer batch): **every writer locks what it will change
before it reads it**, in the same transaction as the write, and a waiting writer then
reads the committed result of the one before it.

- PostgreSQL: ``SELECT ... FOR UPDATE`` on the profile rows, in profile id order (so
  two writers locking several rows never wait on each other in a cycle), then read.
- SQLite: it has no row locks, and its default (deferred) transaction only takes the
  write lock at the first write, after the read; so a writer begins with
  ``BEGIN IMMEDIATE``, which takes the database's write lock before the read (writers
  queue on it, for up to ``busy_timeout``; readers are not blocked in WAL mode).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from services.profile.repository import ProfileRepository, ProfileRow
from shared.bus import driver_connection
from shared.errors import NotFound

#: how often a read under lock may find the customer's profile merged into another
#: (then that one is locked); one merge chain step per retry
_MERGE_HOPS = 3


def lock_profiles(session: Session, profile_ids: Iterable[str]) -> None:
    """Hold the write lock on these profiles (SQLite: the database) until the
    transaction ends. Call it before reading what will be written back."""
    connection, mark = driver_connection(session)
    if connection.dialect.name == "sqlite":
        raw = connection.connection.driver_connection
        if raw is not None and not raw.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        # already in a write transaction: it holds the write lock since its first write
        return
    ids = sorted(set(profile_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        connection.exec_driver_sql(
            f"SELECT profile_id FROM profiles WHERE profile_id IN ({','.join([mark] * len(chunk))}) "
            "ORDER BY profile_id FOR UPDATE",
            tuple(chunk),
        )


def load_for_update(session: Session, customer_id: str) -> ProfileRow:
    """The customer's profile, locked for this transaction and read after the lock."""
    repo = ProfileRepository(session)
    lock_profiles(session, [])  # SQLite: the write lock before the first read
    for _ in range(_MERGE_HOPS):
        row = repo.profile_by_customer(customer_id)
        if row is None:
            raise NotFound("no such customer")
        lock_profiles(session, [row.profile_id])
        locked = repo.profile_by_customer(customer_id)
        if locked is None:
            raise NotFound("no such customer")
        if locked.profile_id == row.profile_id:
            return locked
        # merged into another profile between the two reads: lock that one too
    raise NotFound("no such customer")
