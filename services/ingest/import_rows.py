"""Reading an import file: its encoding, its CSV records (streamed), and the order objects
its rows make under one header layout (our column names, a platform's export headers or a
mapping), with the items of a separate details file joined by order id."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.ingest import export_layouts
from services.ingest.export_layouts import TAOBAO_DETAIL_COLUMNS

#: Our own column names -> where the value goes in an order object.
OUR_COLUMNS: dict[str, tuple[str, ...]] = {
    "order_id": ("order_id",),
    "customer_id": ("customer_id",),
    "status": ("status",),
    "created_at": ("created_at",),
    "paid_at": ("paid_at",),
    "updated_at": ("updated_at",),
    "currency": ("currency",),
    "total_amount": ("total_amount",),
    "refunded_amount": ("refunded_amount",),
    "discount_amount": ("discount_amount",),
    "channel": ("channel",),
    "shop_id": ("shop_id",),
    "promotion": ("promotion",),
    "buyer_name": ("buyer", "name"),
    "buyer_mobile": ("buyer", "mobile"),
    "buyer_email": ("buyer", "email"),
    "province": ("shipping", "province"),
    "city": ("shipping", "city"),
    "district": ("shipping", "district"),
    "address": ("shipping", "address"),
    "recipient": ("shipping", "recipient"),
    "shipping_mobile": ("shipping", "mobile"),
    "postal_code": ("shipping", "postal_code"),
    "item_sku": ("item", "sku"),
    "item_name": ("item", "name"),
    "item_category": ("item", "category"),
    "item_brand": ("item", "brand"),
    "item_quantity": ("item", "quantity"),
    "item_unit_price": ("item", "unit_price"),
}


def detect_encoding(path: Path) -> str:
    """UTF-8 if the whole file decodes as UTF-8 (streamed), else GB18030 (a superset of GBK)."""
    with open(path, "rb") as file:
        if file.read(3) == codecs.BOM_UTF8:
            return "utf-8-sig"
        file.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while chunk := file.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "gb18030"
    return "utf-8"


def _clean(value: str) -> str:
    value = value.strip()
    if value.startswith('="') and value.endswith('"'):
        value = value[2:-1]
    return value.lstrip("'\t").strip()


class RowMapper:
    """Turns CSV rows into order objects for one header layout."""

    def __init__(self, header: list[str], options: dict[str, Any], default_currency: str) -> None:
        names = [h.strip().lstrip("\ufeff") for h in header]
        mapping: dict[str, str] = options.get("mapping") or {}
        self.layout = None if mapping else export_layouts.detect(names)
        self.format = "mapped" if mapping else (self.layout.name if self.layout else "ours")
        known = self.layout.columns if self.layout else {}
        self.columns: list[tuple[int, str]] = []
        self.extra: list[tuple[int, str]] = []
        for index, name in enumerate(names):
            target = mapping.get(name) or known.get(name) or name
            if target in OUR_COLUMNS:
                self.columns.append((index, target))
            elif self.layout is not None and name in self.layout.extra:
                self.extra.append((index, name))
        self.width = len(names)
        layout_currency = self.layout.currency if self.layout else None
        self.currency = options.get("currency") or layout_currency or default_currency
        self.channel = options.get("channel") or (self.layout.channel if self.layout else None)
        self.details: ItemDetails | None = None
        targets = {t for _, t in self.columns}
        missing = [
            c for c in ("order_id", "customer_id", "created_at", "total_amount") if c not in targets
        ]
        self.missing = missing
        self.order_id_index = next((i for i, t in self.columns if t == "order_id"), None)

    def order_id(self, row: list[str]) -> str:
        """The row's order id as cleaned for the order ("" if none): rows of one order are
        grouped by it."""
        index = self.order_id_index
        if index is None or index >= len(row):
            return ""
        return _clean(row[index])

    def order_of(self, rows: list[list[str]]) -> dict[str, Any]:
        """One order from the consecutive rows of a line-item export that share its id:
        order-level fields from the first row that has them, every row's item."""
        order = self.order(rows[0])
        if self.details is not None and order.get("order_id"):
            items = self.details.items_of(str(order["order_id"]))
            if items:
                order["items"] = items  # the details file lists every item of the order
                rows = rows[:1]  # (its rows' items are the same items)
        for row in rows[1:]:
            more = self.order(row)
            for key, value in more.items():
                if key == "items":
                    order.setdefault("items", []).extend(value)
                elif isinstance(value, dict) and isinstance(order.get(key), dict):
                    for inner, part in value.items():
                        order[key].setdefault(inner, part)
                else:
                    order.setdefault(key, value)
        return order

    def order(self, row: list[str]) -> dict[str, Any]:
        order: dict[str, Any] = {}
        item: dict[str, Any] = {}
        for index, column in self.columns:
            if index >= len(row):
                continue
            value = _clean(row[index])
            if value == "":
                continue
            path = OUR_COLUMNS[column]
            if path[0] == "item":
                item[path[1]] = value
            elif len(path) == 2:
                order.setdefault(path[0], {})[path[1]] = value
            else:
                order[path[0]] = value
        if item:
            order["items"] = [item]
        order.setdefault("currency", self.currency)
        if self.channel:
            order.setdefault("channel", self.channel)
        layout = self.layout
        if layout is not None:
            status = order.get("status")
            if isinstance(status, str):
                order["status"] = layout.statuses.get(status.replace(" ", ""), status)
            if layout.fix is not None:
                extra = {n: _clean(row[i]) for i, n in self.extra if i < len(row)}
                layout.fix(order, extra)
        return order


class ItemDetails:
    """A details file of items (Taobao's 宝贝报表: one row per item) joined to an order file
    by order id. Held in memory as each order's items: the details of an export are a
    fraction of its orders file."""

    def __init__(self, path: Path, encoding: str | None = None) -> None:
        rows = read_rows(path, encoding or detect_encoding(path))
        header = [h.strip().lstrip("\ufeff") for h in next(rows, [])]
        columns = [
            (i, TAOBAO_DETAIL_COLUMNS[h])
            for i, h in enumerate(header)
            if h in TAOBAO_DETAIL_COLUMNS
        ]
        if not any(target == "order_id" for _, target in columns):
            raise ValueError("the details file has no 订单编号 (order id) column")
        self._items: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            item: dict[str, str] = {}
            order_id = ""
            for index, target in columns:
                value = _clean(row[index]) if index < len(row) else ""
                if not value:
                    continue
                if target == "order_id":
                    order_id = value
                else:
                    item.setdefault(target, value)
            if order_id and item:
                self._items.setdefault(order_id, []).append(item)

    def items_of(self, order_id: str) -> list[dict[str, str]]:
        return [dict(item) for item in self._items.get(order_id, [])]


def read_rows(path: Path, encoding: str) -> Iterator[list[str]]:
    """The file's CSV records, streamed (bounded memory whatever the size)."""
    with open(path, encoding=encoding, newline="", errors="strict") as text:
        yield from csv.reader(text)
