"""One log line per HTTP request (``CRM_ACCESS_LOG``, on by default): method, the path
*template* (``/v1/customers/{customer_id}``, never the ids or query values in it), status
and duration; the ``request_id`` comes from the log context (shared.request_id). No query
string, header or body is ever logged: the line carries no personal data.

Written by :class:`shared.middleware.MetricsMiddleware`, which already has every field, so the
cost is one ``logger.info`` per request (measured: bench/bench_access_log.py).
"""

from __future__ import annotations

import logging

#: the access log's logger: raise its level (or set CRM_ACCESS_LOG=false) to silence it
log = logging.getLogger("crm.access")


def log_request(method: str, path_template: str, status: int, seconds: float) -> None:
    """``GET /v1/customers/{customer_id} 200 3.1ms`` (the request_id from the context)."""
    if log.isEnabledFor(logging.INFO):
        log.info("%s %s %d %.1fms", method, path_template, status, seconds * 1000)
