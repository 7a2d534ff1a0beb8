"""Pieces every loss shares: option and input checks, scoring pairs in chunks, padding lists into a masked matrix."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from fastrank.errors import DataError, LossConfigError

Activation = Callable[[Tensor], Tensor]
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"identity": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class ScoringModel(Protocol):
    """What a loss needs from its model: :class:`fastrank.CrossEncoder` or anything that scores like it."""

    num_labels: int

    def score(self, queries: Sequence[str], documents: Sequence[str]) -> Tensor: ...


def loss_name(loss: object) -> str:
    return type(loss).__name__


def resolve_activation(loss: object, activation_fn: str | Activation | None) -> Activation:
    """``None``/``"identity"``, ``"sigmoid"``, ``"tanh"`` or any callable on a logits tensor."""
    if activation_fn is None:
        return nn.Identity()
    if isinstance(activation_fn, str):
        if activation_fn not in ACTIVATIONS:
            raise LossConfigError(
                f"{loss_name(loss)}: unknown activation_fn {activation_fn!r}; accepted: {', '.join(ACTIVATIONS)}, "
                "None, or a callable on a logits tensor"
            )
        return ACTIVATIONS[activation_fn]()
    if not callable(activation_fn):
        raise LossConfigError(f"{loss_name(loss)}: activation_fn must be a name or a callable, got {activation_fn!r}")
    return activation_fn


def require_one_label(loss: object, model: ScoringModel) -> None:
    if model.num_labels != 1:
        raise LossConfigError(
            f"{loss_name(loss)} expects a model with 1 output label (one relevance logit per pair), but this model "
            f"has {model.num_labels}. Start from a base model without a classification head (CrossEncoder(base) gives it "
            "one logit) or a one-label checkpoint, or use CrossEntropyLoss for class labels."
        )


def check_option(loss: object, name: str, value: Any, ok: bool, accepted: str) -> None:
    if not ok:
        raise LossConfigError(f"{loss_name(loss)}: {name} must be {accepted}, got {value!r}")


def torch_loss_options(loss: object, given: dict[str, Any]) -> dict[str, Any]:
    """The extra keywords sentence-transformers passes to the torch loss a pointwise loss wraps (``reduction``,
    class ``weight``, ...), checked: the loss class's ``torch_options`` names, ``reduction`` 'mean' or 'sum' (the
    trainer needs one number); any other keyword is the TypeError Python would raise. A ``weight`` given as a list
    (from JSON: ``--loss-options``) becomes the float tensor torch takes."""
    accepted = type(loss).torch_options
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise TypeError(f"{loss_name(loss)}() got an unexpected keyword argument {unknown[0]!r} (the torch loss it "
                        f"wraps takes {', '.join(accepted)})")
    if "reduction" in given:
        check_option(loss, "reduction", given["reduction"], given["reduction"] in ("mean", "sum"), "'mean' or 'sum'")
    options = dict(given)
    if isinstance(options.get("weight"), (list, tuple)):
        options["weight"] = torch.tensor(options["weight"], dtype=torch.float32)
    return options


def on_device(options: dict[str, Any], device: Any) -> dict[str, Any]:
    """``options`` with its tensors (a class ``weight``) moved to ``device``."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in options.items()}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_positive_int(value: Any, allow_none: bool = False) -> bool:
    return allow_none if value is None else is_int(value) and value >= 1


def check_text_columns(
    loss: object, inputs: Sequence[Any], count: int | tuple[int, int | None], layout: str
) -> list[Sequence[Any]]:
    """Check the number of input columns (exact or ``(min, max)``) and that they have one entry per row."""
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise DataError(f"{loss_name(loss)} expects a list of input columns ({layout}), got {type(inputs).__name__}")
    low, high = (count, count) if isinstance(count, int) else count
    n = len(inputs)
    if n < low or (high is not None and n > high):
        wanted = str(low) if low == high else f"{low} or more" if high is None else f"{low} to {high}"
        raise DataError(f"{loss_name(loss)} expects {wanted} input columns ({layout}), got {n}")
    columns = list(inputs)
    for i, column in enumerate(columns):
        if isinstance(column, (str, bytes)) or not isinstance(column, Sequence):
            raise DataError(
                f"{loss_name(loss)}: input column {i} must be a list with one entry per row, "
                f"got {type(column).__name__}"
            )
    sizes = [len(c) for c in columns]
    if len(set(sizes)) != 1:
        raise DataError(f"{loss_name(loss)}: input columns must have the same number of rows, got {sizes} ({layout})")
    if sizes[0] == 0:
        raise DataError(f"{loss_name(loss)}: the batch is empty ({layout})")
    return columns


def check_strings(loss: object, column: Sequence[Any], what: str) -> None:
    for row, value in enumerate(column):
        if not isinstance(value, str):
            raise DataError(f"{loss_name(loss)}: {what} in row {row} must be a string, got {type(value).__name__}")


def check_document_lists(loss: object, column: Sequence[Any]) -> list[list[str]]:
    """The documents column of the list formats: a non-empty list of strings per row."""
    lists = []
    for row, docs in enumerate(column):
        if isinstance(docs, str) or not isinstance(docs, Sequence):
            raise DataError(
                f"{loss_name(loss)}: the documents column must hold a list of documents per row; "
                f"row {row} is a {type(docs).__name__}"
            )
        if len(docs) == 0:
            raise DataError(f"{loss_name(loss)}: row {row} has no documents; every row needs at least one")
        check_strings(loss, docs, f"a document of row {row}")
        lists.append(list(docs))
    return lists


def pair_labels(loss: object, labels: Any, rows: int) -> Tensor:
    """One float label per row, as a flat float tensor."""
    if labels is None:
        raise DataError(f"{loss_name(loss)} needs a label per row, got none (is the label column missing?)")
    try:
        values = torch.as_tensor(labels, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{loss_name(loss)}: labels must be numbers, one per row: {exc}") from exc
    if values.numel() != rows:
        raise DataError(
            f"{loss_name(loss)} expects {rows} labels (one per row), got {values.numel()} with shape "
            f"{tuple(values.shape)}"
        )
    return values.view(-1)


def list_labels(loss: object, doc_lists: Sequence[Sequence[str]], labels: Any) -> list[Tensor]:
    """One float label per document of each row; lengths must match the document lists row by row."""
    if labels is None or isinstance(labels, (str, bytes)) or (isinstance(labels, Tensor) and labels.dim() != 2):
        raise DataError(
            f"{loss_name(loss)} expects one list of labels per row (a list of lists), got "
            f"{'none' if labels is None else type(labels).__name__}"
        )
    if len(labels) != len(doc_lists):
        raise DataError(f"{loss_name(loss)}: got {len(labels)} label lists for {len(doc_lists)} rows")
    rows = []
    for row, (docs, values) in enumerate(zip(doc_lists, labels)):
        try:
            tensor = torch.as_tensor(values, dtype=torch.float32).view(-1)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{loss_name(loss)}: labels of row {row} must be a list of numbers: {exc}") from exc
        if tensor.numel() != len(docs):
            raise DataError(
                f"{loss_name(loss)}: row {row} has {len(docs)} documents but {tensor.numel()} labels; "
                "give exactly one label per document"
            )
        rows.append(tensor)
    return rows


def score_pairs(
    model: ScoringModel, queries: Sequence[str], documents: Sequence[str], chunk: int | None = None
) -> Tensor:
    """Float32 logits ``(pairs, num_labels)``, scoring ``chunk`` pairs per forward pass (all at once if None)."""
    step = len(queries) if chunk is None else chunk
    parts = [model.score(queries[i : i + step], documents[i : i + step]) for i in range(0, len(queries), step)]
    return torch.cat(parts).float()


def list_chunk(mini_batch_size: int | None, rows: int, pairs: int) -> int:
    """sentence-transformers' documented rule: None -> as many pairs as rows per pass; <= 0 -> all in one pass.

    (sentence-transformers itself treats 0 like None; here 0 means "all", as its docs say.)
    """
    if mini_batch_size is None:
        return rows
    return pairs if mini_batch_size <= 0 else mini_batch_size


def pad_rows(flat: Tensor, lengths: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Spread a row-major flat tensor into a zero-padded ``(rows, max_len)`` matrix and its validity mask."""
    sizes = torch.as_tensor(list(lengths), device=flat.device)
    mask = torch.arange(int(sizes.max()), device=flat.device)[None, :] < sizes[:, None]
    return flat.new_zeros(mask.shape).masked_scatter(mask, flat), mask


def score_lists(
    model: ScoringModel,
    queries: Sequence[str],
    doc_lists: Sequence[Sequence[str]],
    mini_batch_size: int | None,
    activation_fn: Activation,
) -> tuple[Tensor, Tensor]:
    """Score every (query, document) of each row; return the padded ``(rows, max_docs)`` logits and mask."""
    pair_queries = [q for q, docs in zip(queries, doc_lists) for _ in docs]
    pair_docs = [d for docs in doc_lists for d in docs]
    chunk = list_chunk(mini_batch_size, len(queries), len(pair_docs))
    logits = activation_fn(score_pairs(model, pair_queries, pair_docs, chunk).view(-1))
    return pad_rows(logits, [len(docs) for docs in doc_lists])
