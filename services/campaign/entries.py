"""Who a campaign treated, held out or excluded (and why): its entries read by entry id, and
the CSV download (the API's pages: ``service.entries_page``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from services.campaign.entry_repository import ENTRY_FIELDS, EntryReader
from shared.events import ensure_aware

_JSON_TIME = TypeAdapter(datetime)

#: rows per database read while streaming the CSV
CSV_CHUNK = 5000


def entry_rows(
    session: Session,
    campaign_id: str,
    *,
    outcome: str | None,
    reason: str | None,
    after_id: int | None,
    limit: int,
) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` entries after ``after_id``, by entry id: ``(entry id, the fields of
    an entry)``. The caller checks that the campaign exists."""
    rows = EntryReader(session).page(
        campaign_id, outcome=outcome, reason=reason, after_id=after_id, limit=limit
    )
    for _, fields in rows:
        fields["entered_at"] = ensure_aware(fields["entered_at"])
        fields["counted"] = bool(fields["counted"])
    return rows


def csv_value(value: Any) -> Any:
    """A cell written as the JSON pages write the value: ``true``/``false``, times as
    pydantic gives them (UTC with ``Z``), none as an empty cell."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _JSON_TIME.dump_python(ensure_aware(value), mode="json")
    return "" if value is None else value


def entries_csv(
    sessions: Callable[[], Any], campaign_id: str, *, outcome: str | None, reason: str | None
) -> Iterator[bytes]:
    """The entries as CSV (header first), read in chunks, each in its own short session
    so that a large campaign streams without holding a transaction open. The caller
    checks that the campaign exists first (a 404 cannot follow a started stream)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ENTRY_FIELDS)
    yield buffer.getvalue().encode()
    after: int | None = None
    while True:
        with sessions() as session:
            rows = entry_rows(
                session,
                campaign_id,
                outcome=outcome,
                reason=reason,
                after_id=after,
                limit=CSV_CHUNK,
            )
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        for _, fields in rows:
            writer.writerow([csv_value(fields[name]) for name in ENTRY_FIELDS])
        yield buffer.getvalue().encode()
        after = rows[-1][0]
