"""Cursor pages of short lists read whole (segments, tag rules, policy versions, tags)."""

from __future__ import annotations

import pytest

from shared.errors import ProblemError
from shared.pagination import encode_cursor, page_of


def walk(items: list, limit: int, key=lambda x: x) -> list:
    seen, cursor = [], None
    while True:
        page = page_of(items, key, cursor, limit)
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return seen


def test_pages_walk_every_item_once_in_key_order() -> None:
    assert walk(["c", "a", "b", "e", "d"], 2) == ["a", "b", "c", "d", "e"]
    assert walk([10, 2, 1], 1) == [1, 2, 10]  # integers compare as numbers, not text
    assert walk([], 3) == []
    assert page_of(["a", "b"], lambda x: x, None, 2).next_cursor is None  # exactly one page


def test_a_page_stays_right_when_items_change_between_calls() -> None:
    first = page_of(["a", "b", "c", "d"], lambda x: x, None, 2)
    # "a" removed and "bb" added before the next call: nothing skipped, nothing repeated
    second = page_of(["b", "bb", "c", "d"], lambda x: x, first.next_cursor, 2)
    assert first.items + second.items == ["a", "b", "bb", "c"]


@pytest.mark.parametrize("cursor", ["%%%", encode_cursor({"after": [1]}), encode_cursor({})])
def test_a_foreign_cursor_is_a_problem(cursor: str) -> None:
    with pytest.raises(ProblemError):
        page_of(["a"], lambda x: x, cursor, 1)
