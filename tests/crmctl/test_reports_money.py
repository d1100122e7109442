"""Money in the CLI's report tables is shown to the currency's minor unit."""

from __future__ import annotations

from crmctl import reports


def test_money_is_rounded_to_each_currencys_minor_unit() -> None:
    value = {"CNY": "123.4567", "JPY": "1234.5", "KWD": "1.23456", "USD": "0.005"}
    assert reports.money(value) == "CNY 123.46, JPY 1235, KWD 1.235, USD 0.01"
    table = reports.rows_table("funnel", [{"bucket": "1", "average_order_value": value}])
    assert list(table.columns[1].cells) == ["CNY 123.46, JPY 1235, KWD 1.235, USD 0.01"]
    assert reports.money({}) == "-" and reports.money(None) == "-"
