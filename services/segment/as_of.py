"""Reading the ``as_of`` (and ``since``) query parameter as users write it.

- an ISO 8601 instant with an offset: ``2026-11-30T18:00:00+08:00`` or ``...Z``;
- a plain date, as lifetimes and pandas users write it: ``2026-11-30`` is the end of
  that day in the policy's timezone (its last microsecond), so a purchase made that day
  counts;
- an offset whose ``+`` was sent unencoded arrives as a space
  (``2026-11-30T18:00:00 08:00``): read as the ``+`` it was meant to be.

Anything else, or an instant without an offset, is a 422 naming the parameter, with a
stable code and a message that shows the accepted forms (and says to encode ``+`` as
``%2B``). So is an instant outside the supported range, 1970-01-01 .. 2200-12-31 (UTC;
code ``out_of_range``): the scoring runs on pandas, which holds no time after 2262 or
before 1677, and nothing in the shop is older than the epoch.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.errors import ValidationProblem

_PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# a time, then a space where the "+" of the offset was: "T18:00:00 08:00", "T18:00 0800"
_SPACE_FOR_PLUS = re.compile(
    r"^(?P<head>.+[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (?P<off>\d{2}:?\d{2})$"
)

FORMS = (
    "an ISO 8601 time with an offset (2026-11-30T18:00:00+08:00, encode '+' as %2B in a "
    "query string) or a plain date (2026-11-30: the end of that day in the policy timezone)"
)


# the supported range of as_of/since, both ends included (UTC)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
RANGE = "1970-01-01 .. 2200-12-31 (UTC)"


def _problem(parameter: str, code: str, message: str) -> ValidationProblem:
    return ValidationProblem(
        message, errors=[{"field": parameter, "code": code, "message": message}]
    )


def end_of_day(day: date, timezone: str) -> datetime:
    """The last microsecond of ``day`` in ``timezone``."""
    start = datetime.combine(day + timedelta(days=1), time.min, tzinfo=ZoneInfo(timezone))
    return start - timedelta(microseconds=1)


def parse_as_of(value: str | None, timezone: str, parameter: str = "as_of") -> datetime | None:
    """The instant ``value`` names (None if absent), or a 422 ``ValidationProblem``."""
    if value is None or value == "":
        return None
    text = value.strip()
    if _PLAIN_DATE.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError as exc:
            raise _problem(
                parameter, "invalid_date", f"{parameter}: {exc}; expected {FORMS}"
            ) from exc
        if not EARLIEST.date() <= day <= LATEST.date():
            raise _out_of_range(parameter, value)
        return _in_range(end_of_day(day, timezone), parameter, value)
    spaced = _SPACE_FOR_PLUS.match(text)
    if spaced:
        text = f"{spaced.group('head')}+{spaced.group('off')}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _problem(
            parameter, "invalid_datetime", f"{parameter}={value!r} is not {FORMS}"
        ) from exc
    if moment.tzinfo is None:
        raise _problem(
            parameter,
            "missing_offset",
            f"{parameter}={value!r} has no timezone offset; send {FORMS}",
        )
    return _in_range(moment, parameter, value)


def _out_of_range(parameter: str, value: str) -> ValidationProblem:
    return _problem(
        parameter,
        "out_of_range",
        f"{parameter}={value!r} is outside the supported range {RANGE}",
    )


def _in_range(moment: datetime, parameter: str, value: str) -> datetime:
    """``moment`` if within ``EARLIEST .. LATEST``, else the 422 ``out_of_range``."""
    # aware comparisons never convert, so no OverflowError even at year 1 or 9999
    if not EARLIEST <= moment <= LATEST:
        raise _out_of_range(parameter, value)
    return moment
