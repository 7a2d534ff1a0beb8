"""Training losses for cross-encoders, with sentence-transformers' call convention.

Every loss is a ``torch.nn.Module`` built as ``Loss(model, **options)`` and called as ``loss(inputs, labels)``:
``inputs`` are the dataset's text columns in order (without the label column) and ``labels`` the label column.
Its ``data_format`` class attribute names the training format it reads (see :mod:`fastrank.data`):

- ``pairs`` (query, document, label): BinaryCrossEntropyLoss, CrossEntropyLoss, MSELoss
- ``ntuples`` (query, positive, negative_1..n): MultipleNegativesRankingLoss, CachedMultipleNegativesRankingLoss
- ``lists`` (query, documents, labels): ListNetLoss, ListMLELoss, PListMLELoss, LambdaLoss, RankNetLoss
- ``distillation`` (query, positive, negative(s), margin; or query, documents, scores): MarginMSELoss

``get_loss("listnet", model, **options)`` builds one by its short name (the keys of ``LOSSES``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from torch import nn

from fastrank.losses._utils import LossConfigError, ScoringModel
from fastrank.losses.contrastive import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss
from fastrank.losses.distillation import MarginMSELoss
from fastrank.losses.listwise import (
    WEIGHTING_SCHEMES,
    BaseWeightingScheme,
    LambdaLoss,
    LambdaRankScheme,
    ListMLELoss,
    ListNetLoss,
    NDCGLoss1Scheme,
    NDCGLoss2PPScheme,
    NDCGLoss2Scheme,
    NoWeightingScheme,
    PListMLELambdaWeight,
    PListMLELoss,
)
from fastrank.losses.pairwise import RankNetLoss
from fastrank.losses.pointwise import BinaryCrossEntropyLoss, CrossEntropyLoss, MSELoss

LOSSES: dict[str, type[nn.Module]] = {
    "bce": BinaryCrossEntropyLoss,
    "ce": CrossEntropyLoss,
    "mse": MSELoss,
    "margin-mse": MarginMSELoss,
    "mnrl": MultipleNegativesRankingLoss,
    "cached-mnrl": CachedMultipleNegativesRankingLoss,
    "listnet": ListNetLoss,
    "listmle": ListMLELoss,
    "plistmle": PListMLELoss,
    "lambda": LambdaLoss,
    "ranknet": RankNetLoss,
}


def loss_class(name: str, options: Iterable[str] = ()) -> type[nn.Module]:
    """The loss class registered as ``name`` (case, ``_`` and ``-`` alike), checked to take every option named in
    ``options``; needs no model, so a bad name or option fails before one is loaded.

    Raises LossConfigError (a ValueError) naming the known losses for an unknown name, or the accepted options
    for an unknown option.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in LOSSES:
        raise LossConfigError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}")
    cls = LOSSES[key]
    parameters = inspect.signature(cls.__init__).parameters.values()
    accepted = [p.name for p in parameters if p.name not in ("self", "model")
                and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    accepted += getattr(cls, "torch_options", ())  # the keywords a **kwargs takes for the torch loss it wraps
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise LossConfigError(
            f"{cls.__name__} ({key!r}) has no option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    return cls


def get_loss(name: str, model: ScoringModel, **options: Any) -> nn.Module:
    """Build the loss registered as ``name`` (a key of ``LOSSES``) for ``model`` with ``options`` (checked by
    ``loss_class``)."""
    return loss_class(name, options)(model, **options)


__all__ = [
    "LOSSES",
    "WEIGHTING_SCHEMES",
    "BaseWeightingScheme",
    "BinaryCrossEntropyLoss",
    "CachedMultipleNegativesRankingLoss",
    "CrossEntropyLoss",
    "LambdaLoss",
    "LambdaRankScheme",
    "ListMLELoss",
    "ListNetLoss",
    "LossConfigError",
    "MSELoss",
    "MarginMSELoss",
    "MultipleNegativesRankingLoss",
    "NDCGLoss1Scheme",
    "NDCGLoss2PPScheme",
    "NDCGLoss2Scheme",
    "NoWeightingScheme",
    "PListMLELambdaWeight",
    "PListMLELoss",
    "RankNetLoss",
    "get_loss",
]
