"""Shape planning for GPU engines: TensorRT optimization profiles and CUDA-graph buckets from the data's lengths.

A TensorRT engine is built for explicit (batch x sequence) ranges, one *optimization profile* per length bucket;
a CUDA graph is captured for one exact shape. Both are planned here from the token lengths of real pairs, so the
short-sentence bucket is not sized for 512-token passages, and every batch the runtime sends is padded up to a
planned point: no engine or graph is ever built at serving time. Pure numpy: planned and tested on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fastrank.batching import round_up


@dataclass(frozen=True)
class Profile:
    """One optimization profile: (batch, sequence) ranges for every input, and the shape TensorRT tunes for."""

    min_batch: int
    opt_batch: int
    max_batch: int
    min_seq: int
    opt_seq: int
    max_seq: int

    def covers(self, batch: int, seq: int) -> bool:
        return self.min_batch <= batch <= self.max_batch and self.min_seq <= seq <= self.max_seq

    def shapes(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        return (self.min_batch, self.min_seq), (self.opt_batch, self.opt_seq), (self.max_batch, self.max_seq)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def plan_profiles(
    lengths: Sequence[int] | np.ndarray,
    max_length: int,
    max_batch: int = 64,
    num_profiles: int = 3,
    multiple: int = 8,
) -> list[Profile]:
    """Length buckets at equal-share quantiles of the data (33%, 67% and 100% for three), each a profile.

    Bucket ``i`` covers sequences from one token above bucket ``i-1``'s maximum up to its quantile (rounded up to
    ``multiple``, the runtime's padding), the first starting at 1 and the last always reaching ``max_length``: the
    ranges are contiguous, so every width has a profile whatever padding the caller uses. Each profile is tuned
    (``opt``) for a full batch at the median length of the pairs that fall in it.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or not len(lengths):
        raise ValueError("plan_profiles needs a non-empty 1-D array of token lengths")
    if num_profiles < 1 or max_batch < 1 or max_length < multiple:
        raise ValueError(f"need num_profiles >= 1, max_batch >= 1 and max_length >= {multiple}; got "
                         f"{num_profiles}, {max_batch}, {max_length}")
    padded = np.minimum(np.asarray([round_up(int(n), multiple) for n in lengths]), round_up(max_length, multiple))
    quantiles = np.quantile(padded, np.linspace(0, 1, num_profiles + 1)[1:], method="higher")
    tops = sorted({round_up(int(q), multiple) for q in quantiles[:-1]} | {round_up(max_length, multiple)})
    profiles, low = [], 1
    for top in tops:
        inside = padded[(padded >= low) & (padded <= top)]
        opt = round_up(int(np.median(inside)), multiple) if len(inside) else top
        profiles.append(Profile(1, max_batch, max_batch, low, min(max(opt, low), top), top))
        low = top + 1
    return profiles


def batch_limit(profiles: Sequence[Profile]) -> int:
    """The largest batch every profile covers (the smallest ``max_batch``): a batch this size runs at any length,
    since each length falls in one profile only."""
    return min(p.max_batch for p in profiles)


def pick_profile(profiles: Sequence[Profile], batch: int, seq: int) -> int:
    """Index of the first (tightest) profile covering ``(batch, seq)``; ValueError naming the planned ranges."""
    for i, profile in enumerate(profiles):
        if profile.covers(batch, seq):
            return i
    ranges = ", ".join(f"batch {p.min_batch}-{p.max_batch} x seq {p.min_seq}-{p.max_seq}" for p in profiles)
    raise ValueError(f"no optimization profile covers batch {batch} x sequence {seq}; the engine has: {ranges}. "
                     "Lower the reranker's batch_size or re-export with a larger max batch/length.")


def graph_buckets(max_batch: int, max_length: int, seq_step: int = 64) -> tuple[list[int], list[int]]:
    """CUDA-graph bucket points: batch sizes 1, 2, 4, ... up to ``max_batch``; lengths every ``seq_step`` tokens."""
    batches = sorted({min(1 << i, max_batch) for i in range(max_batch.bit_length() + 1)})
    seqs = list(range(seq_step, round_up(max_length, seq_step) + 1, seq_step))
    return batches, seqs


def bucket_shape(batch: int, seq: int, batches: Sequence[int], seqs: Sequence[int]) -> tuple[int, int]:
    """The smallest planned (batch, seq) point at or above ``(batch, seq)``."""
    b = next((x for x in batches if x >= batch), None)
    s = next((x for x in seqs if x >= seq), None)
    if b is None or s is None:
        raise ValueError(f"batch {batch} x sequence {seq} is above the largest bucket "
                         f"({batches[-1]} x {seqs[-1]}); lower batch_size or max_length")
    return b, s


def pad_batch(batch: dict[str, np.ndarray], rows: int, width: int, pad_token_id: int = 0) -> dict[str, np.ndarray]:
    """Pad a collated batch to ``rows x width`` (extra rows are all padding, masked out; their logits are dropped)."""
    out = {}
    for name, array in batch.items():
        n, w = array.shape
        if n > rows or w > width:
            raise ValueError(f"cannot pad a {n}x{w} batch down to {rows}x{width}")
        fill = pad_token_id if name == "input_ids" else 0
        padded = np.full((rows, width), fill, dtype=array.dtype)
        padded[:n, :w] = array
        out[name] = padded
    if "attention_mask" in out and rows > 0:
        out["attention_mask"][batch["attention_mask"].shape[0]:, 0] = 1  # an all-masked row can make softmax NaN
    return out
