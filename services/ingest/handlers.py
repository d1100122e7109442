"""Handlers for the raw topics outside producers write to."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.ingest import service
from shared.bus import Inbound
from shared.events import Order


def handle_raw_order(session: Session, event: Any, message: Inbound) -> None:
    service.accept_order(session, Order.model_validate(event), source="kafka")


HANDLERS = {"raw.order": handle_raw_order}
