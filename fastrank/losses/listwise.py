"""Listwise losses: each row is a query with a list of documents and one label per document.

Lists in a batch may differ in length: all pairs are scored flat, then padded into a ``(rows, max_docs)`` matrix
with a mask, and padded positions never reach the loss value or its gradient. Reductions follow
sentence-transformers: ListNet, ListMLE and PListMLE average per-query losses; LambdaLoss (and RankNet) average
over every counted document pair of the batch, so a query with more pairs weighs more.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fastrank.losses._utils import (
    Activation,
    LossConfigError,
    ScoringModel,
    check_document_lists,
    check_option,
    check_strings,
    check_text_columns,
    is_int,
    is_positive_int,
    list_labels,
    pad_rows,
    require_one_label,
    resolve_activation,
    score_lists,
)

LIST_COLUMNS = "query, documents list"
_UNSET = object()  # lambda_weight not given


class _ListwiseLoss(nn.Module):
    """Shared constructor and batching of the listwise losses."""

    data_format = "lists"

    def __init__(
        self, model: ScoringModel, activation_fn: str | Activation | None, mini_batch_size: int | None
    ) -> None:
        super().__init__()
        require_one_label(self, model)
        check_option(self, "mini_batch_size", mini_batch_size, mini_batch_size is None or is_int(mini_batch_size),
                     "None or an integer (<= 0 scores the whole batch at once)")
        self.model = model
        self.activation_fn = resolve_activation(self, activation_fn)
        self.mini_batch_size = mini_batch_size
        self.prior: Callable[[Sequence[str], Sequence[Sequence[str]]], list[Tensor]] | None = None
        self.prior_weight = 0.0

    def set_prior(self, prior: Callable[[Sequence[str], Sequence[Sequence[str]]], list[Tensor]] | None,
                  weight: float) -> None:
        """Rank by ``logit + weight * prior`` in the loss (see ``fastrank.losses.prior``); None removes it."""
        check_option(self, "prior weight", weight, isinstance(weight, (int, float)) and weight >= 0, "a number >= 0")
        self.prior, self.prior_weight = prior, float(weight)

    def score_batch(self, inputs: Sequence[Any], labels: Any) -> tuple[Tensor, Tensor, Tensor]:
        """Check the batch, score it and return padded ``(logits, labels, mask)``, each ``(rows, max_docs)``."""
        queries, documents = check_text_columns(self, inputs, 2, LIST_COLUMNS)
        check_strings(self, queries, "the query")
        doc_lists = check_document_lists(self, documents)
        label_rows = list_labels(self, doc_lists, labels)
        logits, mask = score_lists(self.model, queries, doc_lists, self.mini_batch_size, self.activation_fn)
        lengths = [len(d) for d in doc_lists]
        targets, _ = pad_rows(torch.cat(label_rows).to(logits.device), lengths)
        if self.prior is not None and self.prior_weight:
            prior, _ = pad_rows(torch.cat(self.prior(queries, doc_lists)).to(logits.device), lengths)
            logits = logits + self.prior_weight * prior
        return logits, targets, mask


class ListNetLoss(_ListwiseLoss):
    """ListNet: cross-entropy between the softmax of the labels and the softmax of the logits, per query.

    Minimises the top-one probability mismatch of Cao et al.; the batch loss is the mean over queries.

    Args:
        model: the cross-encoder; must have one output label.
        activation_fn: applied to the logits before the loss (name or callable); defaults to identity.
        mini_batch_size: pairs scored per forward pass: None = as many as rows in the batch (as in
            sentence-transformers), ``<= 0`` = all at once.
        label_scale: labels are multiplied by this before their softmax (fastrank addition; 1 = the original
            ListNet and sentence-transformers). With 0/1 labels and scale 1 a positive among ten candidates gets
            only 23% of the target mass, so the loss is satisfied once it leads by one logit; a large scale
            (e.g. 10) makes the target put (nearly) all mass on the positives: softmax cross-entropy over the list.

    Inputs:
        +--------------------------------+--------------------------------+---------------------+
        | columns                        | labels                         | model output labels |
        +================================+================================+=====================+
        | (query, [doc1, ..., docN])     | [label1, ..., labelN]          | 1                   |
        +--------------------------------+--------------------------------+---------------------+

    References:
        - Cao et al., Learning to Rank: From Pairwise Approach to Listwise Approach (ICML 2007)
    """

    def __init__(
        self, model: ScoringModel, activation_fn: str | Activation | None = None, mini_batch_size: int | None = None,
        label_scale: float = 1.0,
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size)
        check_option(self, "label_scale", label_scale, isinstance(label_scale, (int, float)) and label_scale > 0,
                     "a positive number")
        self.label_scale = float(label_scale)

    def forward(self, inputs: Sequence[Any], labels: Any) -> Tensor:
        logits, targets, mask = self.score_batch(inputs, labels)

        log_probs = logits.masked_fill(~mask, -math.inf).log_softmax(dim=1).masked_fill(~mask, 0.0)
        target_probs = (targets * self.label_scale).masked_fill(~mask, -math.inf).softmax(dim=1)
        return -(target_probs * log_probs).sum(dim=1).mean()


class PListMLELoss(_ListwiseLoss):
    """Position-aware ListMLE: weighted negative log-likelihood of the label order under a Plackett-Luce model.

    Position ``r`` of a list of ``n`` documents gets weight ``2^(n - r) - 1`` (normalised to sum to 1 per list), so
    getting the top of the ranking right matters most. The batch loss is the mean over queries.

    Args:
        model: the cross-encoder; must have one output label.
        lambda_weight: the position weights, a callable from the ``(rows, max_docs)`` bool mask of valid positions
            to weights (zero at padded positions), e.g. ``PListMLELambdaWeight()``; left out: ``2^(n - r) - 1``;
            None turns position weighting off (= ListMLE), as in sentence-transformers, whose argument order this is.
        activation_fn: applied to the logits before the loss (name or callable); defaults to identity.
        mini_batch_size: pairs scored per forward pass: None = as many as rows in the batch (as in
            sentence-transformers), ``<= 0`` = all at once.
        respect_input_order: False (default): sort each list by label, highest first (ties in random order);
            True: the documents are already in relevance order and the labels only set the length.
            sentence-transformers defaults to True, but ``fastrank.data`` keeps documents in file order.
        rank_discount_fn: keyword only, fastrank's earlier name for the position weights (a callable as
            ``lambda_weight``); give at most one of the two.

    Inputs:
        +--------------------------------+--------------------------------+---------------------+
        | columns                        | labels                         | model output labels |
        +================================+================================+=====================+
        | (query, [doc1, ..., docN])     | [label1, ..., labelN]          | 1                   |
        +--------------------------------+--------------------------------+---------------------+

    References:
        - Lan et al., Position-Aware ListMLE: A Sequential Learning Process for Ranking (UAI 2014)
    """

    weighted = True

    def __init__(
        self,
        model: ScoringModel,
        lambda_weight: Callable[[Tensor], Tensor] | None | object = _UNSET,
        activation_fn: str | Activation | None = None,
        mini_batch_size: int | None = None,
        respect_input_order: bool = False,
        *,
        rank_discount_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size)
        if lambda_weight is not _UNSET:
            check_option(self, "lambda_weight", lambda_weight, rank_discount_fn is None,
                         "left out when rank_discount_fn is given (they are the same setting)")
            check_option(self, "lambda_weight", lambda_weight, lambda_weight is None or callable(lambda_weight),
                         "None (no position weights) or a callable mask -> weights")
            if lambda_weight is None:
                self.weighted = False
            rank_discount_fn = lambda_weight
        self.rank_discount_fn = rank_discount_fn
        self.respect_input_order = respect_input_order
        self.eps = 1e-10

    @staticmethod
    def default_rank_discount(mask: Tensor) -> Tensor:
        """``2^(n - r) - 1`` for ranks ``r = 1..n``, rescaled by a common factor for lists over 127 documents."""
        num_docs = mask.sum(dim=1, keepdim=True)
        ranks = torch.arange(1, mask.shape[1] + 1, device=mask.device)[None, :]
        shift = (num_docs - 127).clamp_min(0)
        return (torch.pow(2.0, num_docs - ranks - shift) - torch.pow(2.0, -shift)) * mask

    def forward(self, inputs: Sequence[Any], labels: Any) -> Tensor:
        logits, targets, mask = self.score_batch(inputs, labels)

        if not self.respect_input_order:
            logits = logits.gather(1, _label_order(targets, mask))
        scores = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        log_normalizers = scores.flip(1).logcumsumexp(dim=1).flip(1)
        log_probs = logits - log_normalizers
        if self.weighted:
            weights = (self.rank_discount_fn or self.default_rank_discount)(mask)
            # normalised first: weights reach ~2**126 for long lists, and times a log-probability overflow float32
            log_probs = log_probs * (weights / (weights.sum(dim=1, keepdim=True) + self.eps))
        return -log_probs.masked_fill(~mask, 0.0).sum(dim=1).mean()


def _label_order(targets: Tensor, mask: Tensor) -> Tensor:
    """Each row's positions by label, highest first, equal labels in a fresh random order (torch's RNG, which the
    trainer seeds): a stable sort would teach the model the file order of equally labelled documents (WikiQA's
    sentence order). Padded entries sort last, so ``mask`` still marks the valid prefix."""
    shuffle = torch.rand(targets.shape, device=targets.device).argsort(dim=1)
    shuffled = targets.gather(1, shuffle).masked_fill(~mask.gather(1, shuffle), -math.inf)
    return shuffle.gather(1, shuffled.argsort(dim=1, descending=True, stable=True))


class PListMLELambdaWeight(nn.Module):
    """sentence-transformers' position weights for ``PListMLELoss(lambda_weight=...)`` under fastrank's name: the
    mask of valid positions to weights, ``rank_discount_fn`` or by default ``2^(n - r) - 1``."""

    def __init__(self, rank_discount_fn: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        self.rank_discount_fn = rank_discount_fn

    def forward(self, mask: Tensor) -> Tensor:
        return (self.rank_discount_fn or PListMLELoss.default_rank_discount)(mask)


class ListMLELoss(PListMLELoss):
    """ListMLE: negative log-likelihood of the label order under a Plackett-Luce model of the logits.

    Every position counts the same (PListMLE without position weights). The batch loss is the mean over queries.

    Args:
        model: the cross-encoder; must have one output label.
        activation_fn: applied to the logits before the loss (name or callable); defaults to identity.
        mini_batch_size: pairs scored per forward pass: None = as many as rows in the batch (as in
            sentence-transformers), ``<= 0`` = all at once.
        respect_input_order: False (default): sort each list by label, highest first (ties in random order);
            True: the documents are already in relevance order and the labels only set the length.
            sentence-transformers defaults to True, but ``fastrank.data`` keeps documents in file order.

    Inputs:
        +--------------------------------+--------------------------------+---------------------+
        | columns                        | labels                         | model output labels |
        +================================+================================+=====================+
        | (query, [doc1, ..., docN])     | [label1, ..., labelN]          | 1                   |
        +--------------------------------+--------------------------------+---------------------+

    References:
        - Xia et al., Listwise Approach to Learning to Rank: Theory and Algorithm (ICML 2008)
    """

    weighted = False

    def __init__(
        self,
        model: ScoringModel,
        activation_fn: str | Activation | None = None,
        mini_batch_size: int | None = None,
        respect_input_order: bool = False,
    ) -> None:
        super().__init__(model, None, activation_fn, mini_batch_size, respect_input_order)


WeightingScheme = Callable[[Tensor, Tensor], Tensor]


def _pair_distance_weights(gain: Tensor, discount: Tensor) -> Tensor:
    """NDCG-Loss2: ``|1/D(|i-j|) - 1/D(|i-j|+1)| * |G_i - G_j|`` with ``D(r) = log2(1 + r)``, zero for ``i = j``."""
    positions = torch.arange(gain.shape[1], device=gain.device)
    distance = (positions[:, None] - positions[None, :]).abs()
    step = distance.clamp(min=1).float()
    delta = (1.0 / torch.log2(1.0 + step) - 1.0 / torch.log2(2.0 + step)).abs().masked_fill(distance == 0, 0.0)
    return delta[None] * (gain[:, :, None] - gain[:, None, :]).abs()


def _lambdarank_weights(gain: Tensor, discount: Tensor) -> Tensor:
    """LambdaRank: ``|1/D_i - 1/D_j| * |G_i - G_j|``, the NDCG change of swapping the pair."""
    inverse = 1.0 / discount
    return (inverse[:, :, None] - inverse[:, None, :]).abs() * (gain[:, :, None] - gain[:, None, :]).abs()


WEIGHTING_SCHEMES: dict[str, Callable[[float], WeightingScheme]] = {
    "ndcg_loss2pp": lambda mu: lambda g, d: mu * _pair_distance_weights(g, d) + _lambdarank_weights(g, d),
    "ndcg_loss2": lambda mu: _pair_distance_weights,
    "lambdarank": lambda mu: _lambdarank_weights,
    "ndcg_loss1": lambda mu: lambda g, d: (g / d)[:, :, None],
    "none": lambda mu: lambda g, d: g.new_ones(()),
}


class BaseWeightingScheme:
    """sentence-transformers' LambdaLoss weighting-scheme objects under fastrank's names, so its code ports with the
    import changed; ``LambdaLoss`` reads them (and sentence-transformers' own) by class name."""


class NoWeightingScheme(BaseWeightingScheme):
    """Every misordered pair weighs the same."""


class NDCGLoss1Scheme(BaseWeightingScheme):
    """NDCG-Loss1: weights by each document's gain over its discount."""


class NDCGLoss2Scheme(BaseWeightingScheme):
    """NDCG-Loss2: weights by the discount change between neighbouring ranks."""


class LambdaRankScheme(BaseWeightingScheme):
    """LambdaRank: weights by the NDCG change of swapping the pair."""


class NDCGLoss2PPScheme(BaseWeightingScheme):
    """NDCG-Loss2++: ``mu`` x NDCG-Loss2 + LambdaRank (the paper's best)."""

    def __init__(self, mu: float = 10.0) -> None:
        self.mu = mu


ST_WEIGHTING_SCHEMES = {
    "NoWeightingScheme": "none",
    "NDCGLoss1Scheme": "ndcg_loss1",
    "NDCGLoss2Scheme": "ndcg_loss2",
    "LambdaRankScheme": "lambdarank",
    "NDCGLoss2PPScheme": "ndcg_loss2pp",
}


def _from_sentence_transformers_scheme(loss: nn.Module, scheme: Any, mu: float) -> tuple[Any, float]:
    """Map a sentence-transformers weighting scheme object (by class name) to fastrank's name, and its ``mu``."""
    bases = [c.__name__ for c in type(scheme).__mro__]
    if "BaseWeightingScheme" not in bases:
        return scheme, mu
    name = ST_WEIGHTING_SCHEMES.get(type(scheme).__name__)
    if name is None:
        raise LossConfigError(
            f"{type(loss).__name__}: weighting_scheme {type(scheme).__name__} (a sentence-transformers scheme) is not "
            f"supported; use one of {', '.join(ST_WEIGHTING_SCHEMES)} or fastrank's names "
            f"{', '.join(WEIGHTING_SCHEMES)}, or a callable (gain, discount) -> weights"
        )
    return name, float(getattr(scheme, "mu", mu))


class LambdaLoss(_ListwiseLoss):
    """LambdaLoss: pairwise logistic loss over misordered-able document pairs, weighted to bound NDCG.

    For each query, documents are sorted by the model's logits; every pair ``(i, j)`` with ``label_i > label_j``
    (every pair, for NDCG-Loss1) with at least one of the two in the top ``k`` adds
    ``-weight_ij * log σ(sigma * (s_i - s_j))``. The batch loss is the mean over all counted pairs of the batch.

    Args:
        model: the cross-encoder; must have one output label.
        weighting_scheme: ``"ndcg_loss2pp"`` (NDCG-Loss2++, default, best in the paper), ``"ndcg_loss2"``,
            ``"lambdarank"``, ``"ndcg_loss1"``, ``"none"`` (= RankNet), or a callable ``(gain, discount) ->
            weights`` on ``(rows, max_docs)`` tensors in predicted order. sentence-transformers' scheme objects
            (``NDCGLoss2PPScheme(mu=...)``, ``NDCGLoss2Scheme()``, ``LambdaRankScheme()``, ``NDCGLoss1Scheme()``,
            ``NoWeightingScheme()``) map to these names (NDCGLoss2PPScheme's ``mu`` replaces ``mu``).
        k: NDCG@k cutoff: a pair counts if either document is in the model's top k. None = all documents.
        sigma: steepness of the logistic on score differences.
        eps: floor of the ideal DCG, so queries without relevant documents do not divide by zero.
        reduction_log: ``"binary"`` (log2, as in the paper) or ``"natural"``.
        activation_fn: applied to the logits before the loss (name or callable); defaults to identity.
        mini_batch_size: pairs scored per forward pass: None = as many as rows in the batch (as in
            sentence-transformers), ``<= 0`` = all at once.
        mu: weight of the NDCG-Loss2 term in NDCG-Loss2++ (keyword only: the arguments before it are
            sentence-transformers' ``LambdaLoss``'s, in its order).

    Inputs:
        +--------------------------------+--------------------------------+---------------------+
        | columns                        | labels                         | model output labels |
        +================================+================================+=====================+
        | (query, [doc1, ..., docN])     | [label1, ..., labelN]          | 1                   |
        +--------------------------------+--------------------------------+---------------------+

    References:
        - Wang et al., The LambdaLoss Framework for Ranking Metric Optimization (CIKM 2018)
        - Burges, From RankNet to LambdaRank to LambdaMART: An Overview (2010)
    """

    def __init__(
        self,
        model: ScoringModel,
        weighting_scheme: str | WeightingScheme | None = "ndcg_loss2pp",
        k: int | None = None,
        sigma: float = 1.0,
        eps: float = 1e-10,
        reduction_log: Literal["natural", "binary"] = "binary",
        activation_fn: str | Activation | None = None,
        mini_batch_size: int | None = None,
        *,
        mu: float = 10.0,
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size)
        scheme, mu = _from_sentence_transformers_scheme(self, weighting_scheme, mu)
        scheme = "none" if scheme is None else scheme
        check_option(self, "weighting_scheme", scheme, callable(scheme) or scheme in WEIGHTING_SCHEMES,
                     f"one of {', '.join(WEIGHTING_SCHEMES)} or a callable (gain, discount) -> weights")
        check_option(self, "k", k, is_positive_int(k, allow_none=True), "None or an integer >= 1")
        check_option(self, "sigma", sigma, isinstance(sigma, (int, float)) and sigma > 0, "a positive number")
        check_option(self, "eps", eps, isinstance(eps, (int, float)) and eps > 0, "a positive number")
        check_option(self, "reduction_log", reduction_log, reduction_log in ("natural", "binary"),
                     "'natural' or 'binary'")
        check_option(self, "mu", mu, isinstance(mu, numbers.Real) and not isinstance(mu, bool) and math.isfinite(mu)
                     and mu >= 0, "a finite number >= 0 (the NDCG-Loss2 term's weight)")
        self.weighting_scheme = scheme
        self.weights_fn = scheme if callable(scheme) else WEIGHTING_SCHEMES[scheme](mu)
        self.k, self.sigma, self.eps, self.reduction_log, self.mu = k, sigma, eps, reduction_log, mu

    def forward(self, inputs: Sequence[Any], labels: Any) -> Tensor:
        logits, targets, mask = self.score_batch(inputs, labels)
        max_docs = logits.shape[1]
        k = self.k or max_docs

        order = logits.masked_fill(~mask, -math.inf).argsort(dim=1, descending=True, stable=True)
        scores, true, valid = logits.gather(1, order), targets.gather(1, order), mask.gather(1, order)
        counted = valid[:, :, None] & valid[:, None, :]
        if self.weighting_scheme != "ndcg_loss1":
            counted = counted & (true[:, :, None] > true[:, None, :])
        in_top_k = torch.arange(max_docs, device=logits.device) < k
        counted = counted & (in_top_k[:, None] | in_top_k[None, :])

        discount = torch.log2(2.0 + torch.arange(max_docs, device=logits.device, dtype=logits.dtype))[None, :]
        ideal = targets.masked_fill(~mask, -math.inf).sort(dim=1, descending=True).values.clamp(min=0.0)
        max_dcg = ((torch.pow(2.0, ideal) - 1.0) / discount)[:, :k].sum(dim=1).clamp(min=self.eps)
        gain = (torch.pow(2.0, true.clamp(min=0.0)) - 1.0) / max_dcg[:, None]
        weights = self.weights_fn(gain, discount)

        pair_losses = -weights * F.logsigmoid(self.sigma * (scores[:, :, None] - scores[:, None, :]))
        if self.reduction_log == "binary":
            pair_losses = pair_losses / math.log(2.0)
        return torch.where(counted, pair_losses, 0.0).sum() / counted.sum().clamp(min=1)

