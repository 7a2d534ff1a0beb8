"""The training samplers: ``no_duplicates`` (batches in which no text appears twice, sentence-transformers'
NO_DUPLICATES) and length-grouped batches, each drawing its epoch's order from ``seed + epoch``.

Seeded per epoch, as sentence-transformers' samplers and accelerate's seedable sampler are, an epoch's order does
not depend on what consumed torch's global RNG before it: a run resumed from a checkpoint inside epoch 2 replays
epoch 2's order (the Trainer builds the epoch's iterator before it restores the RNG state), and ``data_seed``
chooses the order apart from ``seed``."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import LengthGroupedSampler

from fastrank.training.collator import row_text_items

# How many open batches one row may try before it goes where it must repeat a text (keeps an epoch's plan
# linear in the rows when some text is in more rows than there are batches).
MAX_PROBES = 2000


def row_texts(row: dict[str, Any], text_columns: Sequence[str]) -> frozenset[str]:
    """Every text of a row, across its text columns (list columns contribute each of their texts)."""
    return frozenset(str(text) for text in row_text_items(row, text_columns))


class EpochSeeded:
    """A sampler whose epoch order is drawn from ``torch.Generator().manual_seed(seed + epoch)``; the Trainer (through
    accelerate's data loader) calls ``set_epoch`` before each epoch. A ``generator`` given explicitly is used as it
    is, across epochs."""

    seed: int = 0
    epoch: int = 0
    generator: torch.Generator | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_generator(self) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        return torch.Generator().manual_seed(self.seed + self.epoch)


class EpochLengthGroupedSampler(EpochSeeded, LengthGroupedSampler):
    """transformers' ``LengthGroupedSampler`` (mega-batches of similar length, the longest first), seeded per
    epoch."""

    def __init__(self, batch_size: int, lengths: Sequence[int], seed: int = 0):
        LengthGroupedSampler.__init__(self, batch_size, lengths=list(lengths))
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=self.epoch_generator()))


class NoDuplicatesSampler(EpochSeeded, Sampler[int]):
    """A shuffled order of all rows in which every consecutive ``batch_size`` chunk repeats no text.

    Each epoch plans its batches before yielding: rows whose texts recur most are placed first, each into one of
    the emptiest batches (at random among them) that holds none of its texts, so rows sharing a query spread over
    different batches.
    Every batch is full (only the last may be short, as with plain batching) and every row comes exactly once,
    so epoch lengths are unchanged. A text in more rows than there are batches must repeat somewhere; only
    then (or after ``MAX_PROBES`` tries) does a batch get a text twice. sentence-transformers' sampler fills
    batches greedily instead and ends an epoch with short batches.
    """

    def __init__(self, rows: Sequence[frozenset[str]], batch_size: int, generator: torch.Generator | None = None,
                 seed: int = 0):
        self.rows = list(rows)
        self.batch_size = batch_size
        self.generator = generator
        self.seed = seed

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[int]:
        for batch in self.plan():
            yield from batch

    def plan(self) -> list[list[int]]:
        """This epoch's batches (drawn from ``generator``, else from ``seed + epoch``)."""
        n, size = len(self.rows), self.batch_size
        if n == 0:
            return []
        generator = self.epoch_generator()
        rng = random.Random(int(torch.randint(2**62, (1,), generator=generator)))
        order = torch.randperm(n, generator=generator).tolist()
        counts = Counter(text for row in self.rows for text in row)
        top = [max(row, key=lambda t: (counts[t], t), default="") for row in self.rows]
        first_seen: dict[str, int] = {}
        for rank, index in enumerate(order):
            first_seen.setdefault(top[index], rank)
        # the rows of the most repeated text first, all together, then the next text's: random among equals
        order.sort(key=lambda i: (-counts[top[i]] if top[i] else 0, first_seen[top[i]]))
        num_batches = -(-n // size)
        capacity = [size] * (num_batches - 1) + [n - size * (num_batches - 1)]
        batches: list[list[int]] = [[] for _ in range(num_batches)]
        texts: list[set[str]] = [set() for _ in range(num_batches)]
        by_fill = _FillLevels(num_batches, size)
        spread: Counter[str] = Counter()  # how many batches hold each text
        for index in order:
            row = self.rows[index]
            everywhere = any(spread[text] >= num_batches for text in row)  # must repeat: skip the search
            batch = by_fill.least_filled_without(row, texts, rng, search=not everywhere)
            batches[batch].append(index)
            spread.update(row - texts[batch])
            texts[batch].update(row)
            by_fill.filled_one(batch, done=len(batches[batch]) == capacity[batch])
        last = batches.pop()
        rng.shuffle(batches)
        for batch in batches + [last]:
            rng.shuffle(batch)
        return batches + [last]


class _FillLevels:
    """Open batches bucketed by how many rows they hold, to find the emptiest batch a row fits in."""

    def __init__(self, num_batches: int, size: int):
        self.levels: list[list[int]] = [list(range(num_batches))] + [[] for _ in range(size)]
        self.fill = [0] * num_batches
        self.position = list(range(num_batches))

    def least_filled_without(self, row: frozenset[str], texts: list[set[str]], rng: random.Random,
                             search: bool = True) -> int:
        """A random batch among the emptiest that share no text with ``row``; the emptiest batch if none does
        (within ``MAX_PROBES`` tries) or ``search`` is off."""
        probes = 0
        fallback = None
        for level in self.levels:
            if not level:
                continue
            start = rng.randrange(len(level))
            if fallback is None:
                fallback = level[start]
                if not search:
                    return fallback
            for k in range(len(level)):
                batch = level[(start + k) % len(level)]
                if texts[batch].isdisjoint(row):
                    return batch
                probes += 1
                if probes >= MAX_PROBES:
                    return fallback
        assert fallback is not None, "no open batch left"
        return fallback

    def filled_one(self, batch: int, done: bool) -> None:
        """Move ``batch`` one level up (or out, once full)."""
        level = self.levels[self.fill[batch]]
        moved = level[-1]
        level[self.position[batch]] = moved
        self.position[moved] = self.position[batch]
        level.pop()
        self.fill[batch] += 1
        if not done:
            self.position[batch] = len(self.levels[self.fill[batch]])
            self.levels[self.fill[batch]].append(batch)
