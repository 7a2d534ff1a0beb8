"""Pointwise losses: each (query, document) pair is scored and compared with its own label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fastrank.errors import DataError
from fastrank.losses._utils import (
    Activation,
    LossConfigError,
    ScoringModel,
    check_option,
    check_strings,
    check_text_columns,
    on_device,
    pair_labels,
    require_one_label,
    resolve_activation,
    score_pairs,
    torch_loss_options,
)

PAIR_COLUMNS = "query, document"


def _pair_columns(loss: nn.Module, inputs: Sequence[Sequence[str]]) -> tuple[Sequence[str], Sequence[str]]:
    queries, documents = check_text_columns(loss, inputs, 2, PAIR_COLUMNS)
    check_strings(loss, queries, "the query")
    check_strings(loss, documents, "the document")
    return queries, documents


class BinaryCrossEntropyLoss(nn.Module):
    """Binary cross-entropy between the pair's logit and its relevance label: relevant pairs get high logits.

    The classic pointwise reranker loss (monoBERT, the MS MARCO cross-encoders). Labels may be hard (0/1) or soft
    (a probability in [0, 1], e.g. a teacher's sigmoid score).

    Args:
        model: the cross-encoder; must have one output label.
        activation_fn: applied to the logits before the loss (name or callable); defaults to identity.
        pos_weight: weight of the positive term (``> 0``), e.g. the negatives-per-positive ratio to balance a
            dataset with many more negatives. Defaults to None (1).
        **kwargs: what sentence-transformers passes to ``torch.nn.BCEWithLogitsLoss``: ``weight``, ``reduction``
            ('mean' or 'sum'). The arguments stand in sentence-transformers' order.

    Inputs:
        +--------------------+--------------------------------------------------+---------------------+
        | columns            | labels                                           | model output labels |
        +====================+==================================================+=====================+
        | (query, document)  | 1 relevant / 0 not, or a float in [0, 1]         | 1                   |
        +--------------------+--------------------------------------------------+---------------------+

    References:
        - Nogueira & Cho, Passage Re-ranking with BERT (2019): https://arxiv.org/abs/1901.04085
        - :class:`torch.nn.BCEWithLogitsLoss`
    """

    data_format = "pairs"
    torch_options = ("weight", "reduction")  # what **kwargs passes to the torch loss, as sentence-transformers does

    def __init__(
        self,
        model: ScoringModel,
        activation_fn: str | Activation | None = None,
        pos_weight: float | Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        require_one_label(self, model)
        self.options = torch_loss_options(self, kwargs)
        check_option(self, "activation_fn", activation_fn, not isinstance(activation_fn, (int, float, Tensor)),
                     "a name or callable (the second argument, as in sentence-transformers; give a positive weight "
                     "as pos_weight=)")
        if pos_weight is not None:
            pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32)
            check_option(self, "pos_weight", pos_weight, pos_weight.numel() == 1 and pos_weight.item() > 0,
                         "a positive number")
        self.model = model
        self.pos_weight = pos_weight
        self.activation_fn = resolve_activation(self, activation_fn)

    def forward(self, inputs: Sequence[Sequence[str]], labels: Tensor | Sequence[float]) -> Tensor:
        queries, documents = _pair_columns(self, inputs)
        targets = pair_labels(self, labels, len(queries))
        if ((targets < 0) | (targets > 1)).any():
            raise DataError(f"{type(self).__name__}: labels must lie in [0, 1], got values in "
                            f"[{targets.min().item():g}, {targets.max().item():g}]; use MSELoss for other scores")

        logits = self.activation_fn(score_pairs(self.model, queries, documents).view(-1))
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(logits.device)
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.device), pos_weight=pos_weight,
                                                  **on_device(self.options, logits.device))


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy over the model's ``num_labels`` logits: predict the pair's class.

    For graded or categorical pair labels (e.g. NLI entailment / neutral / contradiction, or relevance grades
    0..C-1). Labels are class ids, or a probability distribution over the classes per row (soft targets).

    Args:
        model: the cross-encoder; must have 2 or more output labels (one per class).
        activation_fn: applied to the logits before the loss (name or callable); defaults to identity.
        **kwargs: what sentence-transformers passes to ``torch.nn.CrossEntropyLoss``: ``weight`` (per class),
            ``ignore_index``, ``reduction`` ('mean' or 'sum'), ``label_smoothing``.

    Inputs:
        +--------------------+--------------------------------------------------+---------------------+
        | columns            | labels                                           | model output labels |
        +====================+==================================================+=====================+
        | (query, document)  | class id in 0..num_labels-1                      | num_labels (>= 2)   |
        +--------------------+--------------------------------------------------+---------------------+
        | (query, document)  | list of num_labels class probabilities           | num_labels (>= 2)   |
        +--------------------+--------------------------------------------------+---------------------+

    References:
        - :class:`torch.nn.CrossEntropyLoss`
    """

    data_format = "pairs"
    # what **kwargs passes to the torch loss, as sentence-transformers does
    torch_options = ("weight", "ignore_index", "reduction", "label_smoothing")

    def __init__(self, model: ScoringModel, activation_fn: str | Activation | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.options = torch_loss_options(self, kwargs)
        if model.num_labels < 2:
            raise LossConfigError(
                f"CrossEntropyLoss expects a model with 2 or more output labels (one per class), but this model has "
                f"{model.num_labels}. Load a base model without a classification head with CrossEncoder(base, "
                "num_labels=C) (fastrank train --loss ce does so from the data's classes), or use "
                "BinaryCrossEntropyLoss for a single relevance logit."
            )
        self.model = model
        self.activation_fn = resolve_activation(self, activation_fn)

    def _targets(self, labels: Any, rows: int) -> Tensor:
        classes = self.model.num_labels
        if labels is None:
            raise DataError("CrossEntropyLoss needs a class label per row, got none")
        values = torch.as_tensor(labels)
        if values.shape == (rows, classes):  # class probabilities; a one-hot matrix of ints is read as such too
            return values.float()
        if values.numel() != rows:
            raise DataError(
                f"CrossEntropyLoss expects {rows} class ids (one per row) or a ({rows}, {classes}) matrix of class "
                f"probabilities, got labels with shape {tuple(values.shape)}"
            )
        values = values.view(-1)
        if values.is_floating_point() and not torch.equal(values, values.round()):
            raise DataError("CrossEntropyLoss: class ids must be whole numbers; use BCE/MSE for float scores")
        values = values.long()
        ignored = values == self.options.get("ignore_index", -100)  # torch's default too: such rows are left out
        if (((values < 0) | (values >= classes)) & ~ignored).any():
            raise DataError(
                f"CrossEntropyLoss: class ids must lie in 0..{classes - 1} for a {classes}-label model, got "
                f"values in [{values.min().item()}, {values.max().item()}]"
            )
        return values

    def forward(self, inputs: Sequence[Sequence[str]], labels: Tensor | Sequence[Any]) -> Tensor:
        queries, documents = _pair_columns(self, inputs)
        targets = self._targets(labels, len(queries))

        logits = self.activation_fn(score_pairs(self.model, queries, documents))
        return F.cross_entropy(logits, targets.to(logits.device), **on_device(self.options, logits.device))


class MSELoss(nn.Module):
    """Mean squared error between the pair's logit and a target score, e.g. a teacher cross-encoder's logit.

    Used for distillation from a stronger teacher or to regress graded labels. Mind the scale: if the teacher's
    scores went through a sigmoid, pass ``activation_fn="sigmoid"`` so the student is compared on the same scale.

    Args:
        model: the cross-encoder; must have one output label.
        activation_fn: applied to the logits before the loss (name or callable); defaults to identity.
        **kwargs: ``reduction`` ('mean' or 'sum'), passed on as sentence-transformers passes it to
            ``torch.nn.MSELoss``.

    Inputs:
        +--------------------+--------------------------------------------------+---------------------+
        | columns            | labels                                           | model output labels |
        +====================+==================================================+=====================+
        | (query, document)  | float target score (e.g. a teacher's logit)      | 1                   |
        +--------------------+--------------------------------------------------+---------------------+

    References:
        - Hofstätter et al., Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge
          Distillation (2020): https://arxiv.org/abs/2010.02666
    """

    data_format = "pairs"
    torch_options = ("reduction",)  # what **kwargs passes to the torch loss, as sentence-transformers does

    def __init__(self, model: ScoringModel, activation_fn: str | Activation | None = None, **kwargs: Any) -> None:
        super().__init__()
        require_one_label(self, model)
        self.options = torch_loss_options(self, kwargs)
        self.model = model
        self.activation_fn = resolve_activation(self, activation_fn)

    def forward(self, inputs: Sequence[Sequence[str]], labels: Tensor | Sequence[float]) -> Tensor:
        queries, documents = _pair_columns(self, inputs)
        targets = pair_labels(self, labels, len(queries))

        logits = self.activation_fn(score_pairs(self.model, queries, documents).view(-1))
        return F.mse_loss(logits, targets.to(logits.device).detach(), **self.options)
