"""The services' REST APIs, with problem+json errors turned into one exception."""

from __future__ import annotations

from typing import Any

import httpx

from crmctl.config import Target


class CrmError(Exception):
    """A command failed: the message is what the operator reads; the exit code is 1."""

    def __init__(self, message: str, *, status: int | None = None, problem: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem


def describe_problem(response: httpx.Response) -> tuple[str, Any]:
    """One line for an error response (title, detail, each field error) and its body."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}", None
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}", body
    parts = [f"HTTP {response.status_code}", str(body.get("title") or "")]
    if body.get("detail"):
        parts.append(str(body["detail"]))
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            parts.append(f"{error.get('field')}: {error.get('code')} ({error.get('message')})")
    return " - ".join(p for p in parts if p), body


class Api:
    """A thin client for one target: ``api.get("segment", "/v1/segments")`` returns JSON."""

    def __init__(self, target: Target) -> None:
        self.target = target
        headers = {"X-API-Key": target.api_key} if target.api_key else {}
        self.http = httpx.Client(headers=headers, timeout=target.timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, service: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self.target.url(service, path)
        try:
            return self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise CrmError(f"{service} at {self.target.urls[service]} unreachable: {exc}") from exc

    def call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, service, path, **kwargs)
        if response.status_code >= 400:
            message, body = describe_problem(response)
            raise CrmError(
                f"{service} {method} {path}: {message}", status=response.status_code, problem=body
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, service: str, path: str, **kwargs: Any) -> Any:
        return self.call("GET", service, path, **kwargs)

    def post(self, service: str, path: str, **kwargs: Any) -> Any:
        return self.call("POST", service, path, **kwargs)

    def delete(self, service: str, path: str, **kwargs: Any) -> Any:
        return self.call("DELETE", service, path, **kwargs)

    def pages(
        self, service: str, path: str, *, limit: int | None = None, **params: Any
    ) -> list[Any]:
        """Every item of a cursor-paginated list (``items`` + ``next_cursor``), up to ``limit``."""
        items: list[Any] = []
        cursor: str | None = None
        while True:
            query = {k: v for k, v in params.items() if v is not None}
            if cursor:
                query["cursor"] = cursor
            page = self.get(service, path, params=query)
            if isinstance(page, list):  # a list not (yet) paginated
                items.extend(page)
                break
            items.extend(page.get("items", []))
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and len(items) >= limit):
                break
        return items if limit is None else items[:limit]
