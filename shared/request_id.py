"""Every HTTP request gets an id: the caller's ``X-Request-ID`` when it is a plain token,
else a new one. It is echoed in the response header and carried by every log line of the
request (``shared.logs.log_context``), so a caller's report can be matched to the logs."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logs import log_context

HEADER = "x-request-id"
#: a caller's id is kept only when it cannot smuggle anything into a log line
_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == HEADER.encode():
            text = value.decode("latin-1")
            if _TOKEN.match(text):
                return text
            break
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != HEADER.encode()]
                message = {**message, "headers": [*headers, (HEADER.encode(), request_id.encode())]}
            await send(message)

        with log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)
