"""CrossEncoderTrainer: ``transformers.Trainer`` driven by a fastrank loss and evaluator.

The trainer feeds text columns to the loss (which tokenizes and scores through the model), groups rows of similar
length into batches, runs the reranking evaluator at each evaluation, and writes checkpoints that are ordinary
cross-encoder directories (loadable by fastrank and sentence-transformers) so training can resume from them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from fastrank.errors import DataError
from fastrank.model import CrossEncoder
from fastrank.training.args import CrossEncoderTrainingArguments
from fastrank.training.collator import CrossEncoderCollator, row_length

logger = logging.getLogger(__name__)

_FORMAT_COLUMNS = {
    "pairs": "query, document, label",
    "ntuples": "query, positive, negative_1..negative_n",
    "lists": "query, documents, labels",
    "distillation": "query, documents, scores (or query, positive, negative, label for MarginMSE)",
}


class _ModelView:
    """What a loss sees as its model during training: scoring goes through the (possibly DDP-wrapped) module,
    so distributed gradient synchronisation hooks run; every other attribute comes from the CrossEncoder."""

    def __init__(self, wrapped: torch.nn.Module, inner: CrossEncoder) -> None:
        self._wrapped = wrapped
        self._inner = inner

    def __call__(self, **features: torch.Tensor) -> torch.Tensor:
        return self._wrapped(**features)

    def score(self, queries, documents) -> torch.Tensor:
        return self._inner.score(queries, documents, forward=self._wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _default_loss(model: CrossEncoder):
    from fastrank.losses import BinaryCrossEntropyLoss, CrossEntropyLoss

    return BinaryCrossEntropyLoss(model) if model.num_labels == 1 else CrossEntropyLoss(model)


class CrossEncoderTrainer(Trainer):
    """Train a :class:`~fastrank.CrossEncoder` with a fastrank loss.

    Args:
        model: the cross-encoder to train.
        args: :class:`CrossEncoderTrainingArguments` (defaults are used when omitted).
        train_dataset / eval_dataset: ``datasets.Dataset`` in the loss's format (see ``fastrank.data``).
        loss: a loss from ``fastrank.losses``; BCE for one-label models and cross-entropy otherwise by default.
        evaluator: e.g. :class:`~fastrank.RerankingEvaluator`, run at every evaluation; its metrics are logged
            with the ``eval_`` prefix and can drive ``metric_for_best_model``.
    """

    def __init__(
        self,
        model: CrossEncoder,
        args: CrossEncoderTrainingArguments | None = None,
        train_dataset=None,
        eval_dataset=None,
        loss=None,
        evaluator=None,
        callbacks=None,
        optimizers=(None, None),
    ) -> None:
        if args is None:
            args = CrossEncoderTrainingArguments(output_dir="runs/fastrank")
        self.loss = loss if loss is not None else _default_loss(model)
        self.evaluator = evaluator
        for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if ds is not None:
                self._check_dataset(name, ds)
        columns = train_dataset.column_names if train_dataset is not None else eval_dataset.column_names
        collator = CrossEncoderCollator(columns)
        strategy = args.eval_strategy
        if evaluator is not None and str(getattr(strategy, "value", strategy)) == "no":
            logger.warning("an evaluator was given but eval_strategy is 'no': it runs only when trainer.evaluate() "
                           "is called; pass CrossEncoderTrainingArguments(eval_strategy='epoch') (or 'steps') to run "
                           "it during training")
        if evaluator is not None and eval_dataset is None:
            args.eval_strategy = "no"  # transformers insists on an eval_dataset; the evaluator stands in for it
        try:
            super().__init__(
                model=model, args=args, data_collator=collator, train_dataset=train_dataset,
                eval_dataset=eval_dataset, callbacks=callbacks, optimizers=optimizers,
            )
        finally:
            args.eval_strategy = strategy
        self.model_accepts_loss_kwargs = False
        self.can_return_loss = True

    def _check_dataset(self, name: str, dataset) -> None:
        if len(dataset) == 0:
            raise DataError(f"{name} is empty")
        fmt = getattr(self.loss, "data_format", None)
        cols = dataset.column_names
        expected = {
            "pairs": lambda c: c[:2] == ["query", "document"],
            "ntuples": lambda c: c[:2] == ["query", "positive"],
            "lists": lambda c: c[:2] == ["query", "documents"],
            "distillation": lambda c: c[:2] in (["query", "documents"], ["query", "positive"]),
        }.get(fmt)
        if expected is not None and not expected(cols):
            raise DataError(
                f"{type(self.loss).__name__} expects the {fmt!r} format ({_FORMAT_COLUMNS[fmt]}), but {name} has "
                f"columns {cols}. Convert with fastrank.data.load_dataset(path, data_format={fmt!r})."
            )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inner = self.accelerator.unwrap_model(model)
        if model is inner:
            loss = self.loss(inputs["inputs"], inputs.get("label"))
        else:
            # The loss holds the bare CrossEncoder as a submodule; for this call an instance attribute shadows it
            # with a view that scores through the wrapper (DDP), so gradient-sync hooks run.
            self.loss.__dict__["model"] = _ModelView(model, inner)
            try:
                loss = self.loss(inputs["inputs"], inputs.get("label"))
            finally:
                del self.loss.__dict__["model"]
        return (loss, {}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.args.group_by_pair_length or dataset is None:
            return super()._get_train_sampler(train_dataset)
        text_columns = self.data_collator.text_columns
        lengths = [row_length(row, text_columns) for row in dataset]
        return LengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=lengths
        )

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        metrics: dict[str, float] = {}
        if eval_dataset is not None or self.eval_dataset is not None:
            metrics.update(super().evaluate(eval_dataset, ignore_keys, metric_key_prefix))
        if self.evaluator is not None:
            scores = self.evaluator(self.accelerator.unwrap_model(self.model))
            scored = {f"{metric_key_prefix}_{k}": float(v) for k, v in scores.items()}
            scored["epoch"] = self.state.epoch
            self.log(scored)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, scored)
            metrics.update(scored)
        return metrics

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        if not self.args.should_save:
            return
        output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.unwrap_model(self.model).write_checkpoint(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_weights(self, checkpoint_dir: str) -> None:
        from safetensors.torch import load_file

        path = Path(checkpoint_dir) / "model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"no model.safetensors in checkpoint {checkpoint_dir}")
        inner = self.accelerator.unwrap_model(self.model)
        missing, unexpected = inner.model.load_state_dict(load_file(str(path)), strict=False)
        real_missing = [k for k in missing if k not in getattr(inner.model, "_tied_weights_keys", {}) or []]
        if unexpected or real_missing:
            logger.warning("checkpoint %s: missing %s, unexpected %s", checkpoint_dir, real_missing, unexpected)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self._load_weights(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        best = self.state.best_model_checkpoint
        if best:
            logger.info("loading best model from %s (score %s)", best, self.state.best_metric)
            self._load_weights(best)
