"""Money as integers in 1/10,000 of the currency unit (the ``*_e4`` columns and figures):
sums are exact and never pass through float; shown with the currency's minor digits."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MONEY_SCALE = 10_000

#: Minor-unit digits of currencies that do not use two (ISO 4217); used for display only.
_CURRENCY_DIGITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "KWD": 3, "BHD": 3, "OMR": 3}


def to_e4(amount: Decimal | int | str) -> int:
    """A money amount as integer 1/10,000 units (half up beyond the fourth decimal)."""
    return int((Decimal(amount) * MONEY_SCALE).to_integral_value(ROUND_HALF_UP))


def from_e4(value: int, currency: str | None = None) -> Decimal:
    """An integer 1/10,000 amount as a Decimal with at least the currency's minor digits."""
    return Decimal(money_text(value, currency))


def minor_digits(currency: str | None) -> int:
    """The minor-unit digits money is shown with in this currency (2 unless ISO 4217 says)."""
    return _CURRENCY_DIGITS.get(currency.upper(), 2) if currency else 2


def money_text(value: int, currency: str | None = None) -> str:
    """The decimal string of an integer 1/10,000 amount (at least the currency's digits)."""
    value = int(value)
    digits = minor_digits(currency)
    if digits == 2 and value % 100 == 0:  # the common case, without Decimal arithmetic
        sign, units = ("-", -value) if value < 0 else ("", value)
        return f"{sign}{units // 10_000}.{units // 100 % 100:02d}"
    exact = Decimal(value).scaleb(-4)
    shown = exact.quantize(Decimal(1).scaleb(-digits))
    return str(shown if shown == exact else exact.normalize())
