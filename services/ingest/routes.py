from __future__ import annotations

from fastapi import APIRouter, Request, status

from services.ingest import service
from services.ingest.schemas import OrderAccepted
from shared.api import require
from shared.events import Order
from shared.runtime import ServiceRuntime

router = APIRouter(prefix="/v1", tags=["orders"])


@router.post(
    "/orders",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderAccepted,
    dependencies=[require("ingest:write")],
)
def post_order(order: Order, request: Request) -> OrderAccepted:
    """Accept one order (the latest state of it); stored before the 202, then relayed to Kafka."""
    runtime: ServiceRuntime = request.app.state.runtime
    with runtime.db.unit_of_work() as session:
        stored = service.accept_order(session, order)
    runtime.relay.notify()
    return OrderAccepted(
        order_id=order.order_id, status="accepted", event_id=stored.event_id,
        sequence=stored.sequence,
    )
