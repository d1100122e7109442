"""RequestModel: text every service can store and publish, or a 422 naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, ValidationError

from shared.api import install_error_handlers
from shared.schemas import MAX_TEXT, RequestModel


class Item(BaseModel):
    sku: str
    labels: dict[str, str] = Field(default_factory=dict)


class Body(RequestModel):
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    items: list[Item] = Field(default_factory=list)


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"name": "王\x00五"}, "name", "text.nul"),
        ({"name": "王\udc00五"}, "name", "text.surrogate"),
        ({"name": "x" * (MAX_TEXT + 1)}, "name", "text.too_long"),
        ({"tags": ["ok", "v\x00ip"]}, "tags[1]", "text.nul"),
        (
            {"items": [{"sku": "a"}, {"sku": "b", "labels": {"k": "\ud800"}}]},
            "items[1].labels.k",
            "text.surrogate",
        ),
        ({"items": [{"sku": "a", "labels": {"\x00": "v"}}]}, "items[0].labels.\x00", "text.nul"),
    ],
)
def test_unstorable_text_is_refused_with_its_field(
    body: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Body.model_validate(body)
    (error,) = caught.value.errors()
    assert error["type"] == code
    assert error["ctx"]["field"] == field


def test_ordinary_text_passes_unchanged() -> None:
    body = {
        "name": "王五 ☃",
        "tags": ["vip", "新客"],
        "items": [{"sku": "A-1", "labels": {"色": "红"}}],
    }
    assert Body.model_validate(body).model_dump() == body


def test_the_api_answers_422_with_field_code_and_message() -> None:
    from fastapi import FastAPI

    app = FastAPI()
    install_error_handlers(app)
    router = APIRouter()

    @router.post("/things")
    def create(body: Body) -> dict[str, str]:
        return {"ok": "yes"}

    app.include_router(router)
    client = TestClient(app)
    response = client.post(
        "/things",
        content=b'{"items": [{"sku": "a", "labels": {"k": "\\u0000"}}]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error == {
        "field": "items[0].labels.k",
        "code": "text.nul",
        "message": "items[0].labels.k contains a NUL byte",
    }
    missing = client.post(
        "/things", content=b'{"items": [{}]}', headers={"content-type": "application/json"}
    )
    assert missing.json()["errors"][0]["field"] == "items[0].sku"
    assert missing.json()["errors"][0]["code"] == "missing"
