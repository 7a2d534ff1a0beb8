"""Tokenize once, sort by length, cut token-budget batches, pad each batch to its own length, restore order.

Every backend (torch, onnxruntime, TensorRT) scores pairs through this module, so padding and truncation
behave identically everywhere. It needs only ``tokenizers`` and numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Pair = tuple[str, str]


def check_pairs(pairs: Sequence[Sequence[str]]) -> list[Pair]:
    """Validate (query, document) pairs; a bad item raises TypeError naming its position and what is accepted."""
    out: list[Pair] = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"pair {i} must be a (query, document) tuple of two strings, got {type(pair).__name__}")
        q, d = pair
        if not isinstance(q, str) or not isinstance(d, str):
            raise TypeError(
                f"pair {i} must hold two strings, got ({type(q).__name__}, {type(d).__name__})"
            )
        out.append((q, d))
    return out


@dataclass
class EncodedPairs:
    """Token ids of every pair, unpadded, plus their lengths (the sort key for batching)."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)


class PairEncoder:
    """Wraps a fast ``tokenizers.Tokenizer`` configured for pair truncation at ``max_length`` without padding."""

    def __init__(self, tokenizer, max_length: int, pad_token_id: int = 0) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length, strategy="longest_first")
        self.max_length = max_length
        self.pad_token_id = pad_token_id

    def encode(self, pairs: Sequence[Pair]) -> EncodedPairs:
        encs = self.tokenizer.encode_batch(list(pairs))
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encs]
        types = [np.asarray(e.type_ids, dtype=np.int64) for e in encs]
        return EncodedPairs(ids, types, np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)))


def round_up(n: int, multiple: int) -> int:
    return n if multiple <= 1 else -(-n // multiple) * multiple


def plan_batches(
    lengths: np.ndarray,
    batch_size: int = 32,
    max_tokens: int | None = None,
    pad_to_multiple_of: int = 8,
) -> list[np.ndarray]:
    """Group indices by length into batches of at most ``batch_size`` pairs and ``max_tokens`` padded tokens.

    Longest first, so a too-large batch fails at the start rather than at the end. A stable sort keeps equal
    lengths in input order, which makes results reproducible.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    n = len(order)
    while start < n:
        longest = round_up(int(lengths[order[start]]), pad_to_multiple_of)
        size = batch_size
        if max_tokens is not None:
            size = max(1, min(batch_size, max_tokens // max(longest, 1)))
        batches.append(order[start : start + size])
        start += size
    return batches


def collate(
    encoded: EncodedPairs, indices: np.ndarray, pad_token_id: int = 0, pad_to_multiple_of: int = 8
) -> dict[str, np.ndarray]:
    """Pad the selected pairs to their own longest length (rounded up) as int64 arrays."""
    width = round_up(int(max(encoded.lengths[i] for i in indices)), pad_to_multiple_of)
    n = len(indices)
    input_ids = np.full((n, width), pad_token_id, dtype=np.int64)
    token_type_ids = np.zeros((n, width), dtype=np.int64)
    attention_mask = np.zeros((n, width), dtype=np.int64)
    for row, i in enumerate(indices):
        length = int(encoded.lengths[i])
        input_ids[row, :length] = encoded.input_ids[i]
        token_type_ids[row, :length] = encoded.token_type_ids[i]
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
