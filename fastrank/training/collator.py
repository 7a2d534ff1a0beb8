"""Collate dataset rows into ``{"inputs": [column, ...], "label": ...}`` for the losses (they tokenize)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from fastrank.batching import check_prompt
from fastrank.errors import DataError

LABEL_COLUMNS = ("label", "labels", "score", "scores")


class CrossEncoderCollator:
    """Gathers text columns in dataset order and the label column (if any).

    Scalar labels become a float tensor; list labels (listwise / distillation formats) stay lists of lists,
    since the lists differ in length and the losses pad them. ``prompt`` (sentence-transformers' ``prompts``
    training argument) travels as ``batch["prompt"]``: the model puts it before every query when it tokenizes, and
    the texts stay as given (a first-stage prior embeds the query itself).
    """

    def __init__(self, column_names: Sequence[str], prompt: str = "") -> None:
        labels = [c for c in column_names if c in LABEL_COLUMNS]
        if len(labels) > 1:
            raise DataError(f"dataset has several label columns {labels}; keep exactly one of {LABEL_COLUMNS}")
        self.label_column = labels[0] if labels else None
        self.text_columns = [c for c in column_names if c not in LABEL_COLUMNS]
        self.prompt = check_prompt(prompt)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {"inputs": [[f[c] for f in features] for c in self.text_columns]}
        if self.prompt:
            batch["prompt"] = self.prompt
        if self.label_column is not None:
            values = [f[self.label_column] for f in features]
            batch["label"] = values if isinstance(values[0], list) else torch.tensor(values, dtype=torch.float32)
        return batch


def row_text_items(row: dict[str, Any], text_columns: Sequence[str]) -> Iterator[Any]:
    """Every text of a row, column by column (a list column gives each of its texts)."""
    for c in text_columns:
        v = row[c]
        yield from (v if isinstance(v, list) else (v,))


def row_length(row: dict[str, Any], text_columns: Sequence[str]) -> int:
    """Characters of text in a row: the key for length-grouped batching."""
    return sum(len(text) for text in row_text_items(row, text_columns))
