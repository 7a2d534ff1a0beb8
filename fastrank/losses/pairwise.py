"""Pairwise losses: within each query's list, every pair of documents with different labels is one example."""

from __future__ import annotations

from typing import Literal

from fastrank.losses._utils import Activation, ScoringModel
from fastrank.losses.listwise import LambdaLoss


class RankNetLoss(LambdaLoss):
    """RankNet: logistic loss on score differences of document pairs, pushing the better-labelled one up.

    Every pair ``(i, j)`` of a query with ``label_i > label_j`` (and either document in the model's top ``k``)
    adds ``-log σ(sigma * (s_i - s_j))``; the batch loss is the mean over all counted pairs of the batch. It is
    :class:`~fastrank.losses.LambdaLoss` without pair weights, and reads the same list format.

    Args:
        model: the cross-encoder; must have one output label.
        k: a pair counts if either document is in the model's top k. None = all documents.
        sigma: steepness of the logistic on score differences.
        eps: kept for parity with LambdaLoss (unused without weights).
        reduction_log: ``"binary"`` (log2) or ``"natural"``.
        activation_fn: applied to the logits before the loss (name or callable); defaults to identity.
        mini_batch_size: pairs scored per forward pass: None = as many as rows in the batch (as in
            sentence-transformers), ``<= 0`` = all at once.

    Inputs:
        +--------------------------------+--------------------------------+---------------------+
        | columns                        | labels                         | model output labels |
        +================================+================================+=====================+
        | (query, [doc1, ..., docN])     | [label1, ..., labelN]          | 1                   |
        +--------------------------------+--------------------------------+---------------------+

    References:
        - Burges et al., Learning to Rank using Gradient Descent (ICML 2005)
    """

    def __init__(
        self,
        model: ScoringModel,
        k: int | None = None,
        sigma: float = 1.0,
        eps: float = 1e-10,
        reduction_log: Literal["natural", "binary"] = "binary",
        activation_fn: str | Activation | None = None,
        mini_batch_size: int | None = None,
    ) -> None:
        super().__init__(
            model, weighting_scheme="none", k=k, sigma=sigma, eps=eps, reduction_log=reduction_log,
            activation_fn=activation_fn, mini_batch_size=mini_batch_size,
        )
