"""Field checks: what every ingest validator applies to one field (text, ids, money,
timestamps, contacts, addresses, attributes), collecting reasons as it goes.

:class:`FieldChecker` normalises a field and records a :class:`Reason` when it cannot; inside
``with checker.lenient():`` a problem drops the field and is a warning instead of a
rejection (``validation.RULES["warnings"]``). The per-record validators live in
``validation``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from services.ingest import reference
from shared.phones import phone_e164
from shared.regions import normalize_region
from shared.schemas import text_problem


@dataclass(frozen=True)
class Reason:
    """Why a record was rejected: the field, a stable code, a message without the value."""

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class RecordRejected(Exception):
    """A record failed validation; ``reasons`` lists every problem found."""

    def __init__(self, reasons: list[Reason]) -> None:
        super().__init__("; ".join(f"{r.field}: {r.message}" for r in reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Rules:
    """The thresholds validation uses (from the settings)."""

    shop_timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    default_region: str = "CN"
    max_future: timedelta = timedelta(hours=1)
    min_year: int = 1970
    max_amount: Decimal = Decimal("100000000")
    max_items: int = 500
    max_quantity: int = 100000
    max_text: int = 5000
    max_attributes_bytes: int = 8192

    @classmethod
    def from_settings(cls, settings: Any) -> Rules:
        try:
            zone = ZoneInfo(settings.shop_timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown shop timezone {settings.shop_timezone!r}") from exc
        return cls(
            shop_timezone=zone,
            default_region=settings.default_region,
            max_future=timedelta(seconds=settings.max_future_seconds),
            min_year=settings.min_year,
            max_amount=Decimal(settings.max_amount),
            max_items=settings.max_items_per_order,
            max_quantity=settings.max_item_quantity,
            max_text=settings.max_text_length,
            max_attributes_bytes=settings.max_attributes_bytes,
        )


ID_MAX, NAME_MAX, ADDRESS_MAX, SHORT_MAX = 128, 100, 500, 200

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_QQ = re.compile(r"^[1-9][0-9]{4,11}$")
_MONEY_JUNK = str.maketrans("", "", ", _¥￥")


class FieldChecker:
    """Collects reasons while normalising one record's fields."""

    def __init__(self, rules: Rules, now: datetime | None) -> None:
        self.rules = rules
        self.now = now or datetime.now(UTC)
        self.reasons: list[Reason] = []
        #: problems in descriptive fields: the field was dropped, the record kept
        self.warnings: list[Reason] = []
        self._lenient = 0

    def fail(self, field: str, code: str, message: str) -> None:
        if self._lenient:
            self.warnings.append(Reason(field, code, message))
        else:
            self.reasons.append(Reason(field, code, message))

    @contextmanager
    def lenient(self) -> Iterator[None]:
        """Within: a problem drops the field (the check returns None) and is a warning."""
        self._lenient += 1
        try:
            yield
        finally:
            self._lenient -= 1

    def done(self) -> None:
        if self.reasons:
            raise RecordRejected(self.reasons)

    # text

    def text(
        self, value: Any, field: str, max_len: int = SHORT_MAX, required: bool = False
    ) -> str | None:
        if value.__class__ is str and value.isprintable():
            # fast path: no control characters, NUL bytes or lone surrogates in there
            if not value.isascii() and not unicodedata.is_normalized("NFC", value):
                value = unicodedata.normalize("NFC", value)
            value = value.strip()
            if not value:
                if required:
                    self.fail(field, "required", "is required")
                return None
            if len(value) > max_len:
                self.fail(field, "text.too_long", f"is longer than {max_len} characters")
                return None
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.fail(field, "required", "is required")
            return None
        if not isinstance(value, str):
            self.fail(field, "type", "must be a string")
            return None
        bad = _CONTROL.search(value)
        if bad is not None:
            if bad.group() == "\x00":
                self.fail(field, "text.nul", "contains a NUL byte")
            else:
                self.fail(field, "text.control", "contains a control character")
            return None
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                self.fail(field, "text.surrogate", "contains a lone surrogate (not Unicode text)")
                return None
            value = unicodedata.normalize("NFC", value)
        value = value.strip()
        if len(value) > max_len:
            self.fail(field, "text.too_long", f"is longer than {max_len} characters")
            return None
        return value

    def ident(self, value: Any, field: str, required: bool = True) -> str | None:
        text = self.text(value, field, ID_MAX, required)
        if text is not None and not text.isascii() and _has_format_character(text):
            self.fail(
                field,
                "text.format_character",
                "contains an invisible or bidirectional format character",
            )
            return None
        return text

    # money

    def currency(self, value: Any, field: str = "currency") -> tuple[str | None, int | None]:
        text = self.text(value, field, 10, required=True)
        if text is None:
            return None, None
        code = reference.CURRENCY_ALIASES.get(text, text.upper())
        digits = reference.CURRENCY_MINOR_UNITS.get(code)
        if digits is None:
            self.fail(field, "currency.unknown", "is not an ISO 4217 currency code")
            return None, None
        return code, digits

    def money(self, value: Any, field: str, digits: int, required: bool = False) -> Decimal | None:
        if value is None or value == "":
            if required:
                self.fail(field, "required", "is required")
            return None
        if isinstance(value, bool):
            self.fail(field, "money.type", "must be a decimal string")
            return None
        if isinstance(value, float):
            if not math.isfinite(value):
                self.fail(field, "money.not_finite", "must be a finite number (not NaN/infinity)")
                return None
            value = repr(value)
        if isinstance(value, int):
            checked = _check_amount(Decimal(value), digits, self.rules.max_amount)
        elif isinstance(value, Decimal):
            checked = _check_amount(value, digits, self.rules.max_amount)
        elif isinstance(value, str):
            checked = _money_text(value, digits, self.rules.max_amount)
        else:
            self.fail(field, "money.type", "must be a decimal string")
            return None
        amount, code, message = checked
        if amount is None:
            self.fail(field, code, message)
        return amount

    # time

    def timestamp(self, value: Any, field: str, required: bool = False) -> datetime | None:
        if value is None or value == "":
            if required:
                self.fail(field, "required", "is required")
            return None
        parsed: datetime | None = None
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value) or abs(value) > 1e14:
                self.fail(field, "time.format", "is not a valid epoch time")
                return None
            seconds = value / 1000 if abs(value) > 1e11 else value
            parsed = datetime.fromtimestamp(seconds, UTC)
        elif isinstance(value, str) and len(value) <= 40:
            parsed = _parse_time(value)
        if parsed is None:
            self.fail(field, "time.format", "is not an ISO 8601 timestamp")
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.rules.shop_timezone)
        if parsed > self.now + self.rules.max_future:
            self.fail(field, "time.future", "lies too far in the future")
            return None
        if parsed.year < self.rules.min_year:
            self.fail(field, "time.too_old", f"lies before {self.rules.min_year}")
            return None
        return parsed

    # contacts

    def mobile(self, value: Any, field: str) -> str | None:
        text = self.text(value, field, 40)
        if text is None:
            return None
        if "*" in text:
            return None  # masked by the platform: nothing usable
        result = phone_e164(text, self.rules.default_region)
        if result is None:
            self.fail(field, "phone.invalid", "is not a valid phone number")
        return result

    def email(self, value: Any, field: str) -> str | None:
        text = self.text(value, field, 254)
        if text is None:
            return None
        if not _EMAIL.match(text):
            self.fail(field, "email.invalid", "is not an email address")
            return None
        local, _, domain = text.rpartition("@")
        return f"{local}@{domain.lower()}"

    def qq(self, value: Any, field: str) -> str | None:
        text = self.text(value, field, 20)
        if text is not None and not _QQ.match(text):
            self.fail(field, "qq.invalid", "is not a QQ number")
            return None
        return text

    # structure

    def mapping(self, value: Any, field: str) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(field, "type", "must be an object")
            return None
        return value

    def address(self, value: Any, field: str) -> dict[str, Any] | None:
        raw = self.mapping(value, field)
        if raw is None:
            return None
        address = self.text(raw.get("address"), f"{field}.address", ADDRESS_MAX)
        region = normalize_region(
            self.text(raw.get("province"), f"{field}.province", 50),
            self.text(raw.get("city"), f"{field}.city", 50),
            district=self.text(raw.get("district"), f"{field}.district", 50),
            address=address,
        )
        return {
            "province": region.province,
            "city": region.city,
            "district": region.district,
            "address": address,
            "recipient": self.text(raw.get("recipient"), f"{field}.recipient", NAME_MAX),
            "mobile": self.mobile(raw.get("mobile"), f"{field}.mobile"),
            "postal_code": self.text(raw.get("postal_code"), f"{field}.postal_code", 20),
        }

    def attributes(self, value: Any, field: str = "attributes") -> dict[str, Any]:
        raw = self.mapping(value, field)
        if not raw:
            return {}
        problem = json_value_problem(raw)
        if problem is not None:
            self.fail(field, *problem)
            return {}
        encoded = orjson.dumps(raw)
        if len(encoded) > self.rules.max_attributes_bytes:
            self.fail(field, "attributes.too_large", "is too large")
            return {}
        return dict(orjson.loads(encoded))

    def integer(
        self, value: Any, field: str, low: int, high: int, required: bool = False
    ) -> int | None:
        if value is None or value == "":
            if required:
                self.fail(field, "required", "is required")
            return None
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value.strip())
        if number is None:
            self.fail(field, "type", "must be an integer")
            return None
        if not low <= number <= high:
            self.fail(field, "range", f"must be between {low} and {high}")
            return None
        return number


QUANTUM = {digits: Decimal(1).scaleb(-digits) for digits in range(0, 5)}


def _has_format_character(text: str) -> bool:
    """Unicode category Cf: bidirectional overrides and isolates (U+202A..E, U+2066..9),
    zero-width spaces and joiners, U+FEFF, soft hyphens: an id holding one looks like
    another id (or reorders what a reader sees) while it is not."""
    return any(unicodedata.category(ch) == "Cf" for ch in text)


@lru_cache(maxsize=65536)
def _money_text(value: str, digits: int, max_amount: Decimal) -> tuple[Decimal | None, str, str]:
    """Parse a money string (amounts repeat a lot: cached)."""
    if len(value) > 40:
        return None, "money.too_large", "is not a plausible amount"
    text = value.translate(_MONEY_JUNK)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None, "money.format", "is not a decimal number"
    return _check_amount(amount, digits, max_amount)


def _check_amount(
    amount: Decimal, digits: int, max_amount: Decimal
) -> tuple[Decimal | None, str, str]:
    if not amount.is_finite():
        return None, "money.not_finite", "must be a finite number (not NaN/infinity)"
    if abs(amount) > max_amount:
        return None, "money.too_large", f"exceeds {max_amount}"
    if amount < 0:
        return None, "money.negative", "must not be negative"
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > digits:
        return None, "money.scale", f"has more than {digits} decimals for its currency"
    # copy_abs: "-0.00" is zero, not a negative amount to publish
    return amount.quantize(QUANTUM[digits]).copy_abs(), "", ""


@lru_cache(maxsize=65536)
def _parse_time(value: str) -> datetime | None:
    """ISO 8601 text to a datetime (timestamps repeat within batches and exports: cached;
    datetimes are immutable)."""
    text = value.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    if text.isdigit() and len(text) in (10, 13):
        # epoch seconds or milliseconds written as text (every CSV value is text)
        number = int(text)
        return datetime.fromtimestamp(number / 1000 if len(text) == 13 else number, UTC)
    if len(text) >= 10 and text[4] == "/" and text[7] == "/":
        text = text.replace("/", "-", 2)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def json_value_problem(value: Any, depth: int = 0) -> tuple[str, str] | None:
    """``(code, message)`` if free-form JSON would not pass through unchanged: NUL bytes or
    lone surrogates in keys or text, numbers that are not finite or beyond 64 bits."""
    if depth > 32:
        return "attributes.too_deep", "is nested more than 32 levels"
    if isinstance(value, str):
        return text_problem(value)  # (attributes are bounded far below its length limit)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            return "attributes.number_range", "holds an integer beyond 64 bits"
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return "attributes.not_finite", "holds NaN or an infinity"
        if abs(value) >= 2.0**63:
            # the JSON parser reads an integer beyond 64 bits as a float: it would change
            return "attributes.number_range", "holds a number beyond 64 bits"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = json_value_problem(key, depth + 1) or json_value_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, list):
        for item in value:
            problem = json_value_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return "type", f"holds a {type(value).__name__}, not a JSON value"
