from __future__ import annotations

from pydantic import BaseModel


class OrderAccepted(BaseModel):
    order_id: str
    status: str
    event_id: str | None = None
    sequence: int | None = None
