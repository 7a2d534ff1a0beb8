"""The ``no_duplicates`` sampler: batches in which no text appears twice (sentence-transformers' NO_DUPLICATES)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from fastrank.training.collator import row_text_items


def row_texts(row: dict[str, Any], text_columns: Sequence[str]) -> frozenset[str]:
    """Every text of a row, across its text columns (list columns contribute each of their texts)."""
    return frozenset(str(text) for text in row_text_items(row, text_columns))


class NoDuplicatesSampler(Sampler[int]):
    """A shuffled order of all rows in which every consecutive ``batch_size`` chunk repeats no text.

    Rows are taken in random order; a row sharing a text (in any text column) with the batch being filled is
    deferred to a later batch. Rows left over when no duplicate-free full batch can be formed come last, so only
    the epoch's final batch(es) can repeat a text. Yields each row exactly once, so epoch lengths are unchanged.
    """

    def __init__(self, rows: Sequence[frozenset[str]], batch_size: int, generator: torch.Generator | None = None):
        self.rows = list(rows)
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[int]:
        remaining = deque(torch.randperm(len(self.rows), generator=self.generator).tolist())
        while remaining:
            batch: list[int] = []
            seen: set[str] = set()
            skipped: list[int] = []
            while remaining and len(batch) < self.batch_size:
                index = remaining.popleft()
                if seen.isdisjoint(self.rows[index]):
                    batch.append(index)
                    seen.update(self.rows[index])
                else:
                    skipped.append(index)
            remaining.extendleft(reversed(skipped))
            yield from batch
