"""Logging setup: one line per record, with the service name; never personal data."""

from __future__ import annotations

import logging
import os
import sys

from shared.broker_state import KAFKA_LOG_FILTER


def configure_logging(service: str, level: str = "INFO") -> None:
    """Configure the root logger for a service process (idempotent)."""
    root = logging.getLogger()
    if getattr(root, "_crm_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
    )
    # during a broker outage kafka-python repeats the same warning on every retry
    handler.addFilter(KAFKA_LOG_FILTER)
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("CRM_LOG_LEVEL", level).upper())
    # kafka-python is chatty at INFO about every connection
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    root._crm_configured = True  # type: ignore[attr-defined]
