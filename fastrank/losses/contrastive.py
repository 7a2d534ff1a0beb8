"""Contrastive losses: pick each query's positive among in-batch and hard negatives (InfoNCE for cross-encoders)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from fastrank.losses._utils import (
    Activation,
    ScoringModel,
    check_option,
    check_strings,
    check_text_columns,
    is_positive_int,
    require_one_label,
    resolve_activation,
    score_pairs,
)
from fastrank.progress import bar_disabled

NTUPLE_COLUMNS = "query, positive, negative_1..negative_n"


class MultipleNegativesRankingLoss(nn.Module):
    """Softmax cross-entropy that ranks each query's positive above its negatives.

    Each row's candidates are its positive, ``num_negatives`` documents sampled from the *other* rows (their
    positives and hard negatives) and its own hard negatives. Every candidate is scored with the query, passed
    through ``activation_fn`` and multiplied by ``scale``; the loss is the cross-entropy of picking the positive,
    averaged over rows. Larger batches give more in-batch negatives.

    Args:
        model: the cross-encoder; must have one output label.
        num_negatives: in-batch negatives sampled per query (without replacement, from the global torch RNG);
            None or more than available = all other rows' candidates.
        scale: multiplies the activated scores (the inverse softmax temperature).
        activation_fn: applied to the logits before scaling (name or callable); defaults to ``"sigmoid"``.

    Inputs:
        +-----------------------------------------+-----------+---------------------+
        | columns                                 | labels    | model output labels |
        +=========================================+===========+=====================+
        | (query, positive)                       | none      | 1                   |
        +-----------------------------------------+-----------+---------------------+
        | (query, positive, negative_1..n)        | none      | 1                   |
        +-----------------------------------------+-----------+---------------------+

    References:
        - Henderson et al., Efficient Natural Language Response Suggestion for Smart Reply, section 4.4 (2017):
          https://arxiv.org/abs/1705.00652
    """

    data_format = "ntuples"

    def __init__(
        self,
        model: ScoringModel,
        num_negatives: int | None = 4,
        scale: float = 10.0,
        activation_fn: str | Activation | None = "sigmoid",
    ) -> None:
        super().__init__()
        require_one_label(self, model)
        check_option(self, "num_negatives", num_negatives, is_positive_int(num_negatives, allow_none=True),
                     "None (all in-batch negatives) or an integer >= 1")
        check_option(self, "scale", scale, isinstance(scale, (int, float)) and scale > 0, "a positive number")
        self.model = model
        self.num_negatives = num_negatives
        self.scale = scale
        self.activation_fn = resolve_activation(self, activation_fn)

    def candidate_pairs(self, inputs: Sequence[Sequence[str]]) -> tuple[list[str], list[str], int]:
        """Check the columns and list every (query, candidate) pair, candidate-column-major; returns the row count.

        Candidate columns: the positives, one column per sampled in-batch negative, then the hard negatives.
        """
        columns = check_text_columns(self, inputs, (2, None), NTUPLE_COLUMNS)
        for i, column in enumerate(columns):
            check_strings(self, column, ["the query", "the positive"][i] if i < 2 else f"negative_{i - 1}")
        queries, documents = list(columns[0]), [list(c) for c in columns[1:]]
        rows, width = len(queries), len(documents)
        flat = [doc for column in documents for doc in column]  # candidate c of row j sits at c * rows + j
        others = ~torch.eye(rows, dtype=torch.bool).repeat(1, width)
        if self.num_negatives is not None and self.num_negatives < (rows - 1) * width:
            picks = torch.multinomial(others.float(), self.num_negatives)
        else:
            picks = torch.arange(rows * width).repeat(rows, 1)[others].view(rows, -1)
        in_batch = [[flat[i] for i in column] for column in picks.T.tolist()]
        candidates = [documents[0], *in_batch, *documents[1:]]
        return queries * len(candidates), [doc for column in candidates for doc in column], rows

    def loss_from_logits(self, logits: Tensor, rows: int) -> Tensor:
        """Cross-entropy of the positive (candidate 0) given the flat candidate-column-major logits."""
        scores = self.activation_fn(logits.view(-1, rows).T) * self.scale
        return F.cross_entropy(scores, torch.zeros(rows, dtype=torch.long, device=scores.device))

    def forward(self, inputs: Sequence[Sequence[str]], labels: Any = None) -> Tensor:
        queries, documents, rows = self.candidate_pairs(inputs)

        logits = score_pairs(self.model, queries, documents).view(-1)
        return self.loss_from_logits(logits, rows)


class _RngSnapshot:
    """The CPU (and the model's CUDA device) RNG state before a forward pass, to replay the same dropout masks."""

    def __init__(self, device: torch.device) -> None:
        self.cpu_state = torch.get_rng_state()
        self.cuda_index = device.index if device.type == "cuda" else None
        self.cuda_state = None if self.cuda_index is None else torch.cuda.get_rng_state(self.cuda_index)

    @contextmanager
    def replay(self) -> Iterator[None]:
        devices = [] if self.cuda_index is None else [self.cuda_index]
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu_state)
            if self.cuda_index is not None:
                torch.cuda.set_rng_state(self.cuda_state, self.cuda_index)
            yield


class CachedMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    """:class:`MultipleNegativesRankingLoss` with gradient caching: the same loss and gradients in bounded memory.

    The candidates are scored ``mini_batch_size`` pairs at a time without a graph; the loss and its gradient with
    respect to every logit are computed; on ``backward()`` each mini-batch is scored again with a graph (replaying
    its RNG state, so dropout is identical) and the cached logit gradients are pushed through it. Only one
    mini-batch's activations are alive at a time, so the batch (and with it the in-batch negatives) can grow
    without growing memory, at the cost of a second forward pass. The returned loss must be back-propagated once.

    Args:
        model: the cross-encoder; must have one output label.
        num_negatives: in-batch negatives sampled per query (without replacement, from the global torch RNG);
            None or more than available = all other rows' candidates.
        scale: multiplies the activated scores (the inverse softmax temperature).
        activation_fn: applied to the logits before scaling (name or callable); defaults to ``"sigmoid"``.
        mini_batch_size: (query, candidate) pairs scored per forward pass; this bounds the memory.
        show_progress_bar: show a progress bar over the mini-batches of the first (graph-free) scoring pass.

    Inputs:
        +-----------------------------------------+-----------+---------------------+
        | columns                                 | labels    | model output labels |
        +=========================================+===========+=====================+
        | (query, positive)                       | none      | 1                   |
        +-----------------------------------------+-----------+---------------------+
        | (query, positive, negative_1..n)        | none      | 1                   |
        +-----------------------------------------+-----------+---------------------+

    References:
        - Gao et al., Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup (2021):
          https://arxiv.org/abs/2101.06983
        - Henderson et al., Efficient Natural Language Response Suggestion for Smart Reply (2017):
          https://arxiv.org/abs/1705.00652
    """

    def __init__(
        self,
        model: ScoringModel,
        num_negatives: int | None = 4,
        scale: float = 10.0,
        activation_fn: str | Activation | None = "sigmoid",
        mini_batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(model, num_negatives=num_negatives, scale=scale, activation_fn=activation_fn)
        check_option(self, "mini_batch_size", mini_batch_size, is_positive_int(mini_batch_size), "an integer >= 1")
        check_option(self, "show_progress_bar", show_progress_bar, isinstance(show_progress_bar, bool), "True or False")
        self.mini_batch_size = mini_batch_size
        self.show_progress_bar = show_progress_bar

    def forward(self, inputs: Sequence[Sequence[str]], labels: Any = None) -> Tensor:
        queries, documents, rows = self.candidate_pairs(inputs)
        if not torch.is_grad_enabled():
            return self.loss_from_logits(score_pairs(self.model, queries, documents, self.mini_batch_size), rows)

        # 1. score every mini-batch without a graph, remembering the RNG state each one started from
        model, step = self.model, self.mini_batch_size
        device = getattr(model, "device", torch.device("cpu"))
        snapshots, chunks = [], []
        with torch.no_grad():
            for start in tqdm(range(0, len(queries), step), desc="Scoring mini-batches", leave=False,
                              disable=bar_disabled(self.show_progress_bar)):
                snapshots.append(_RngSnapshot(device))
                chunks.append(score_pairs(model, queries[start : start + step], documents[start : start + step]))
        # 2. the loss and its gradient with respect to every logit
        leaves = [chunk.view(-1).requires_grad_() for chunk in chunks]
        with torch.enable_grad():
            loss = self.loss_from_logits(torch.cat(leaves), rows)
            logit_grads = torch.autograd.grad(loss, leaves)
        # 3. on backward, re-score each mini-batch with a graph and push its cached gradient through it
        autocast = (device.type, torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))
        loss = loss.detach().requires_grad_()
        loss.register_hook(partial(_replay_backward, model, queries, documents, step, logit_grads, snapshots, autocast))
        return loss


def _replay_backward(
    model: ScoringModel,
    queries: list[str],
    documents: list[str],
    step: int,
    logit_grads: Sequence[Tensor],
    snapshots: Sequence[_RngSnapshot],
    autocast: tuple[str, bool, torch.dtype],
    grad_output: Tensor,
) -> None:
    """Backward hook of the cached loss: the model is the one the forward pass used (the trainer may swap it)."""
    device_type, autocast_enabled, autocast_dtype = autocast
    with torch.enable_grad():
        for index, start in enumerate(range(0, len(queries), step)):
            with snapshots[index].replay(), torch.autocast(device_type, autocast_dtype, enabled=autocast_enabled):
                logits = score_pairs(model, queries[start : start + step], documents[start : start + step])
            surrogate = torch.dot(logits.view(-1), logit_grads[index]) * grad_output
            surrogate.backward()
