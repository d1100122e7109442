"""One exception base; every error leaves the API as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://headless-crm.dev/problems/"


class ProblemError(Exception):
    """An error with a stable problem ``type`` slug, an HTTP status and a human title."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        slug: str | None = None,
        title: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title or self.title)
        self.detail = detail
        if status is not None:
            self.status = status
        if slug is not None:
            self.slug = slug
        if title is not None:
            self.title = title
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        if self.status == 422 and "errors" not in body:
            # every 422 lists what is wrong in the same shape, even a single whole-body problem
            body["errors"] = [
                {"field": "", "code": self.slug, "message": self.detail or self.title}
            ]
        return body


class NotFound(ProblemError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(ProblemError):
    status, slug, title = 409, "conflict", "Conflict"


class Unauthorized(ProblemError):
    status, slug, title = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(ProblemError):
    status, slug, title = 403, "forbidden", "The API key lacks a required scope"


class ValidationProblem(ProblemError):
    status, slug, title = 422, "validation-error", "The request is not valid"


class PayloadTooLarge(ProblemError):
    status, slug, title = 413, "payload-too-large", "The request is too large"


class ServiceUnavailable(ProblemError):
    status, slug, title = 503, "unavailable", "A dependency is unavailable"
