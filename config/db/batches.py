"""The one driver of every batched sweep: expiring sessions, purging soft-deleted rows, pruning
audit rows.

A sweep over thousands of rows never runs as one transaction (it would hold thousands of row
locks and one huge undo): it goes one keyset batch at a time, each batch its own transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

K = TypeVar("K")

BatchResult = tuple[Sequence[K], Counter[str]]


def in_keyset_batches(
    run_batch: Callable[[K | None], BatchResult[K]],
    *,
    batch_size: int,
    progress: Callable[[Counter[str]], Any] | None = None,
) -> Counter[str]:
    """Call ``run_batch(after)`` until a batch comes back short; return the summed counts.

    ``run_batch`` handles up to ``batch_size`` rows whose keys sort after ``after`` (None: from
    the start), in its own transaction, and returns their keys in key order and what it did;
    the last key becomes the next call's ``after``. ``progress`` gets the running totals after
    each non-empty batch.
    """
    total: Counter[str] = Counter()
    after: K | None = None
    while True:
        keys, counts = run_batch(after)
        total.update(counts)
        if keys and progress is not None:
            progress(total)
        if len(keys) < batch_size:
            return total
        after = keys[-1]
