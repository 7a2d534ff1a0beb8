"""Distillation losses: match a teacher's score differences between documents of the same query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fastrank.errors import DataError
from fastrank.losses._utils import (
    Activation,
    ScoringModel,
    check_document_lists,
    check_option,
    check_strings,
    check_text_columns,
    is_int,
    list_labels,
    pad_rows,
    require_one_label,
    resolve_activation,
    score_lists,
    torch_loss_options,
)

MARGIN_COLUMNS = "query, positive, negative_1..negative_n; or query, documents list"


class MarginMSELoss(nn.Module):
    """Mean squared error between the student's and the teacher's score margins.

    Each row has a reference document (the positive, or the first of a list) and one or more others; the loss
    compares ``s(query, reference) - s(query, other)`` with the teacher's margin for the same pair, averaged over
    all (row, other document) pairs. Neither document has to be relevant: only the difference is learned.

    Args:
        model: the cross-encoder; must have one output label.
        activation_fn: applied to the logits before taking margins (name or callable); defaults to identity. Use
            ``"sigmoid"`` if the teacher's scores are probabilities.
        mini_batch_size: pairs scored per forward pass: None = as many as rows in the batch, ``<= 0`` = all at once.
        **kwargs: ``reduction``, 'mean' (default) or 'sum' over the margins, as sentence-transformers passes it to
            ``torch.nn.MSELoss``.

    Inputs:
        +-----------------------------------+------------------------------------------------+---------------------+
        | columns                           | labels                                         | model output labels |
        +===================================+================================================+=====================+
        | (query, positive, negative)       | teacher(q, pos) - teacher(q, neg)              | 1                   |
        +-----------------------------------+------------------------------------------------+---------------------+
        | (query, positive, negative_1..n)  | [teacher(q, pos) - teacher(q, neg_i), i=1..n]  | 1                   |
        +-----------------------------------+------------------------------------------------+---------------------+
        | (query, positive, negative_1..n)  | [teacher(q, pos), teacher(q, neg_1..n)]        | 1                   |
        +-----------------------------------+------------------------------------------------+---------------------+
        | (query, [doc_1, ..., doc_N])      | [teacher(q, doc_1), ..., teacher(q, doc_N)]    | 1                   |
        +-----------------------------------+------------------------------------------------+---------------------+

    References:
        - Hofstätter et al., Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge
          Distillation (2020): https://arxiv.org/abs/2010.02666
    """

    data_format = "distillation"
    torch_options = ("reduction",)  # what **kwargs takes, as sentence-transformers passes it on

    def __init__(
        self,
        model: ScoringModel,
        activation_fn: str | Activation | None = None,
        mini_batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        require_one_label(self, model)
        self.reduction = torch_loss_options(self, kwargs).get("reduction", "mean")
        check_option(self, "mini_batch_size", mini_batch_size, mini_batch_size is None or is_int(mini_batch_size),
                     "None or an integer (<= 0 scores the whole batch at once)")
        self.model = model
        self.activation_fn = resolve_activation(self, activation_fn)
        self.mini_batch_size = mini_batch_size

    def _tuple_margins(self, labels: Any, rows: int, negatives: int) -> Tensor:
        if labels is None:
            raise DataError("MarginMSELoss needs the teacher's margins (or scores) as labels, got none")
        try:
            if isinstance(labels, (list, tuple)):
                values = torch.stack([torch.as_tensor(row, dtype=torch.float32).view(-1) for row in labels])
            else:
                values = torch.as_tensor(labels, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"MarginMSELoss: labels must be numbers, one margin or score list per row: {exc}") from exc
        if values.shape == (rows,):
            values = values[:, None]
        if values.shape == (rows, negatives + 1):
            return values[:, :1] - values[:, 1:]
        if values.shape == (rows, negatives):
            return values
        raise DataError(
            f"MarginMSELoss: with {negatives} negative column(s) the labels must be {negatives} teacher margin(s) "
            f"(positive minus each negative) or {negatives + 1} teacher scores (positive first) per row, i.e. shape "
            f"({rows}, {negatives}) or ({rows}, {negatives + 1}); got {tuple(values.shape)}"
        )

    def teacher_margins(self, inputs: Sequence[Any], labels: Any) -> tuple[Sequence[str], list[list[str]], Tensor]:
        """Check the batch; return queries, per-row documents (reference first) and padded teacher margins."""
        columns = check_text_columns(self, inputs, (2, None), MARGIN_COLUMNS)
        queries = columns[0]
        check_strings(self, queries, "the query")
        if len(columns) == 2:
            doc_lists = check_document_lists(self, columns[1])
            short = next((row for row, docs in enumerate(doc_lists) if len(docs) < 2), None)
            if short is not None:
                raise DataError(
                    f"MarginMSELoss: row {short} has 1 document; a margin needs the reference document (first) "
                    "and at least one other"
                )
            scores, _ = pad_rows(torch.cat(list_labels(self, doc_lists, labels)), [len(d) for d in doc_lists])
            return queries, doc_lists, scores[:, :1] - scores[:, 1:]
        for i, column in enumerate(columns[1:]):
            check_strings(self, column, "the positive" if i == 0 else f"negative_{i}")
        doc_lists = [list(docs) for docs in zip(*columns[1:])]
        return queries, doc_lists, self._tuple_margins(labels, len(queries), len(columns) - 2)

    def forward(self, inputs: Sequence[Any], labels: Any) -> Tensor:
        queries, doc_lists, teacher = self.teacher_margins(inputs, labels)

        logits, mask = score_lists(self.model, queries, doc_lists, self.mini_batch_size, self.activation_fn)
        student = logits[:, :1] - logits[:, 1:]
        valid = mask[:, 1:]
        squared = (student - teacher.to(student.device).detach()) ** 2
        total = torch.where(valid, squared, 0.0).sum()
        return total if self.reduction == "sum" else total / valid.sum()
