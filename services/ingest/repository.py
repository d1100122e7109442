from __future__ import annotations

from sqlalchemy.orm import Session

from services.ingest.models import StoredEvent


class EventStore:
    """Every query on the durable event store."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, event: StoredEvent) -> StoredEvent:
        self.session.add(event)
        self.session.flush()
        return event
