"""``as_of`` as users write it: plain dates, unencoded ``+`` offsets, clear 422s."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from services.segment.as_of import parse_as_of
from shared.errors import ValidationProblem
from tests.segment.helpers import NOW
from tests.segment.test_api import HEADERS, READER, client  # noqa: F401  (the seeded API fixture)

SHANGHAI = "Asia/Shanghai"


def test_a_plain_date_is_the_end_of_that_day_in_the_policy_timezone() -> None:
    moment = parse_as_of("2026-11-30", SHANGHAI)
    assert moment == datetime(2026, 11, 30, 15, 59, 59, 999999, tzinfo=UTC)
    assert parse_as_of("2026-11-30", "UTC") == datetime(
        2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-30T18:00:00+08:00",
        "2026-11-30T18:00:00 08:00",  # the "+" arrived as a space
        "2026-11-30 18:00:00 08:00",
        "2026-11-30T10:00:00Z",
        "2026-11-30T10:00:00.000+00:00",
    ],
)
def test_offsets_are_read_as_intended(text: str) -> None:
    assert parse_as_of(text, SHANGHAI) == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("2026-11-30T18:00:00", "missing_offset"),
        ("yesterday", "invalid_datetime"),
        ("2026-13-01", "invalid_date"),
    ],
)
def test_anything_else_is_a_422_naming_the_parameter(text: str, code: str) -> None:
    with pytest.raises(ValidationProblem) as caught:
        parse_as_of(text, SHANGHAI)
    problem = caught.value.to_problem()
    assert problem["status"] == 422
    assert problem["errors"][0]["field"] == "as_of" and problem["errors"][0]["code"] == code
    assert "%2B" in problem["errors"][0]["message"]


def test_every_as_of_endpoint_takes_a_plain_date(client: TestClient) -> None:  # noqa: F811
    # alice bought on 10-31 and 11-18 (Shanghai); the plain date 10-31 includes that day
    day = client.get("/v1/customers/alice/scores", params={"as_of": "2026-10-31"}, headers=READER)
    assert day.status_code == 200, day.text
    body = day.json()
    assert body["frequency"] == 1 and body["recency_days"] == 0
    assert datetime.fromisoformat(body["as_of"]) == datetime(
        2026, 10, 31, 15, 59, 59, 999999, tzinfo=UTC
    )
    assert body["policy_version"] == 1
    before = client.get(
        "/v1/customers/alice/scores", params={"as_of": "2026-10-30"}, headers=READER
    )
    assert before.status_code == 404
    for path in ("/v1/scores", "/v1/clv-summary", "/v1/customers/alice/clv-summary"):
        response = client.get(path, params={"as_of": "2026-10-31"}, headers=READER)
        assert response.status_code == 200, (path, response.text)
    report = client.get(
        "/v1/reports/lifecycle",
        params={"as_of": "2026-11-30", "since": "2026-10-31"},
        headers=READER,
    )
    assert report.status_code == 200, report.text
    assert datetime.fromisoformat(report.json()["as_of"]) == datetime(
        2026, 11, 30, 15, 59, 59, 999999, tzinfo=UTC
    )


def test_an_unencoded_plus_in_the_query_string_is_read_as_intended(client: TestClient) -> None:  # noqa: F811
    encoded = client.get(
        "/v1/customers/alice/scores", params={"as_of": "2026-11-05T00:00:00+08:00"}, headers=READER
    ).json()
    raw = client.get("/v1/customers/alice/scores?as_of=2026-11-05T00:00:00+08:00", headers=READER)
    assert raw.status_code == 200, raw.text
    assert raw.json() == encoded and encoded["recency_days"] == 5


def test_a_bad_as_of_is_a_problem_that_says_how_to_write_it(client: TestClient) -> None:  # noqa: F811
    response = client.get("/v1/scores", params={"as_of": "last tuesday"}, headers=READER)
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == "as_of"
    assert body["errors"][0]["code"] == "invalid_datetime"
    assert "%2B" in body["detail"]


def test_segment_members_as_of_a_date_are_the_members_then(client: TestClient) -> None:  # noqa: F811
    created = client.post(
        "/v1/segments",
        json={
            "segment_id": "big",
            "name": "big",
            "rule": {"field": "monetary", "op": "gte", "value": "400"},
        },
        headers=HEADERS,
    )
    assert created.status_code == 201, created.text
    now = client.get("/v1/segments/big/members", headers=READER).json()
    assert now["items"] == ["alice"]
    # without as_of: the current policy version and the time the scores reads use, in UTC
    assert now["as_of"] == NOW.isoformat().replace("+00:00", "Z")
    assert now["policy_version"] == 1
    # on 11-01 alice had paid 200.00 only (the 300.00 came on 11-18)
    then = client.get("/v1/segments/big/members", params={"as_of": "2026-11-01"}, headers=READER)
    assert then.status_code == 200, then.text
    assert then.json()["items"] == [] and then.json()["policy_version"] == 1
    later = client.get("/v1/segments/big/members", params={"as_of": "2026-11-19"}, headers=READER)
    assert later.json()["items"] == ["alice"]


OUT_OF_RANGE = [
    "2500-01-01",
    "9999-12-31",
    "9999-12-31T00:00:00Z",
    "4000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+08:00",
    "0001-01-01",
    "1969-12-31T23:59:59Z",
]


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_an_instant_outside_the_supported_range_is_a_422_saying_the_range(text: str) -> None:
    with pytest.raises(ValidationProblem) as caught:
        parse_as_of(text, SHANGHAI, "since")
    error = caught.value.to_problem()["errors"][0]
    assert error["field"] == "since" and error["code"] == "out_of_range"
    assert "1970-01-01 .. 2200-12-31" in error["message"]


def test_the_ends_of_the_supported_range_are_accepted() -> None:
    assert parse_as_of("2200-12-31", "UTC") == datetime(
        2200, 12, 31, 23, 59, 59, 999999, tzinfo=UTC
    )
    assert parse_as_of("1970-01-01T00:00:00Z", SHANGHAI) == datetime(1970, 1, 1, tzinfo=UTC)


def test_every_as_of_endpoint_answers_an_extreme_as_of_with_a_422(client: TestClient) -> None:  # noqa: F811
    created = client.post(
        "/v1/segments",
        json={
            "segment_id": "all",
            "name": "all",
            "rule": {"field": "frequency", "op": "gte", "value": 0},
        },
        headers=HEADERS,
    )
    assert created.status_code == 201, created.text
    paths = [
        ("/v1/customers/alice/scores", "as_of"),
        ("/v1/scores", "as_of"),
        ("/v1/customers/alice/clv-summary", "as_of"),
        ("/v1/clv-summary", "as_of"),
        ("/v1/customers/alice/predictions", "as_of"),
        ("/v1/segments/all/members", "as_of"),
        ("/v1/reports/rfm", "as_of"),
        ("/v1/reports/lifecycle", "since"),
    ]
    for path, parameter in paths:
        for text in OUT_OF_RANGE:
            response = client.get(path, params={parameter: text}, headers=READER)
            assert response.status_code == 422, (path, text, response.text)
            error = response.json()["errors"][0]
            assert (error["field"], error["code"]) == (parameter, "out_of_range"), (path, text)
    # the raw query string form of the tester's report (%2B for the offset's plus)
    raw = client.get("/v1/scores?as_of=0001-01-01T00:00:00%2B08:00", headers=READER)
    assert raw.status_code == 422 and raw.json()["errors"][0]["code"] == "out_of_range"


def test_the_clv_summary_carries_the_policy_version_and_as_of_in_utc(client: TestClient) -> None:  # noqa: F811
    scores = client.get(
        "/v1/customers/alice/scores", params={"as_of": "2026-11-19T08:00:00+08:00"}, headers=READER
    ).json()
    single = client.get(
        "/v1/customers/alice/clv-summary",
        params={"as_of": "2026-11-19T08:00:00+08:00"},
        headers=READER,
    ).json()
    bulk = client.get(
        "/v1/clv-summary", params={"as_of": "2026-11-19T08:00:00+08:00"}, headers=READER
    ).json()["items"]
    assert single["as_of"] == scores["as_of"] == "2026-11-19T00:00:00Z"
    assert single["policy_version"] == scores["policy_version"] == 1
    assert {(b["as_of"], b["policy_version"]) for b in bulk} == {("2026-11-19T00:00:00Z", 1)}
    day = client.get(
        "/v1/customers/alice/clv-summary", params={"as_of": "2026-11-19"}, headers=READER
    ).json()
    assert day["as_of"] == "2026-11-19T15:59:59.999999Z"
