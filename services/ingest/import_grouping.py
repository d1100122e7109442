"""Rows of one order that are not consecutive in an import file.

Exports write an order's line items as consecutive rows, and ``imports`` groups those as it
streams. A file may still scatter an order's rows (sorted by product, merged by hand): a
first, streaming pass finds the order ids that start more than one run of rows, keeping only
a 64-bit hash per run (8 bytes per order, about 8 MB for a million orders, sorted in place),
so that the import can hold exactly those orders' rows aside and store each as one order
after the rest of the file. Memory then grows with the scattered rows only.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable

import numpy as np


def scattered_order_ids(
    rows: Iterable[list[str]], order_id: Callable[[list[str]], str]
) -> set[int]:
    """``hash()`` of each order id whose rows form more than one consecutive run (in this
    process: ``str`` hashes are salted per process). ``rows`` excludes the header."""
    starts = array("q")
    previous = None
    for row in rows:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        current = order_id(row)
        if current and current != previous:
            starts.append(hash(current))
        previous = current
    if len(starts) < 2:
        return set()
    hashes = np.frombuffer(starts, dtype=np.int64).copy()
    hashes.sort()
    repeated = hashes[1:][hashes[1:] == hashes[:-1]]
    return {int(h) for h in np.unique(repeated)}
