"""Request and response models of the API-key administration routes."""

from __future__ import annotations

from datetime import datetime

from limits import parse
from pydantic import BaseModel, Field, field_validator

from shared.apikeys import scope_is_known
from shared.events import UtcDateTime, ensure_aware, utcnow


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="who or what holds the key")
    scopes: list[str] = Field(
        min_length=1,
        description='e.g. ["profile:read", "segment:read"]; "<service>:*" grants every scope '
        'of a service, "*" everything',
    )
    expires_at: datetime | None = Field(None, description="refused from then on (none: never)")
    rate_limit: str | None = Field(
        None,
        description='overrides the per-scope default, e.g. "600/minute" ("unlimited": none)',
    )

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = [s for s in scopes if not scope_is_known(s)]
        if unknown:
            raise ValueError(f"unknown scope(s): {', '.join(unknown)}")
        return scopes

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and ensure_aware(value) <= utcnow():
            raise ValueError("expires_at is not in the future: the key would never work")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _parsable_limit(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() not in ("unlimited", "none"):
            try:
                parse(value)
            except ValueError as exc:
                raise ValueError('not a rate limit like "600/minute"') from exc
        return value


class ApiKeyRotate(BaseModel):
    grace_seconds: int = Field(
        0, ge=0, le=7 * 86400, description="how long the old secret keeps working (0: not)"
    )


class ApiKeyRead(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    created_at: UtcDateTime
    expires_at: UtcDateTime | None
    revoked_at: UtcDateTime | None
    rate_limit: str | None
    last_used_at: UtcDateTime | None = Field(
        None, description="the last use any service reported (reports every ~10 s)"
    )
    version: int


class ApiKeyIssued(ApiKeyRead):
    api_key: str = Field(description="the key to send as X-API-Key; shown only this once")


class ApiKeyAuditEntry(BaseModel):
    at: UtcDateTime
    actor: str
    action: str
    detail: dict[str, object]


class ApiKeyAuditRead(BaseModel):
    key_id: str
    audit: list[ApiKeyAuditEntry]
