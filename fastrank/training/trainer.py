"""CrossEncoderTrainer: ``transformers.Trainer`` driven by a fastrank loss and evaluator.

The trainer feeds text columns to the loss (which tokenizes and scores through the model), groups rows of similar
length into batches, runs the reranking evaluator at each evaluation, and writes checkpoints that are ordinary
cross-encoder directories (loadable by fastrank and sentence-transformers) so training can resume from them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from fastrank.errors import DataError
from fastrank.evaluation.evaluators import accepted_keywords
from fastrank.model import CrossEncoder
from fastrank.model_card import base_model_name, card_fields, public_card_data, write_card
from fastrank.training.args import CrossEncoderTrainingArguments
from fastrank.training.collator import LABEL_COLUMNS, CrossEncoderCollator, row_length
from fastrank.training.sampler import EpochLengthGroupedSampler, NoDuplicatesSampler, row_texts

logger = logging.getLogger(__name__)

_FORMAT_COLUMNS = {
    "pairs": "query, document, label",
    "ntuples": "query, positive, negative_1..negative_n",
    "lists": "query, documents, labels",
    "distillation": "query, documents, scores (or query, positive, negative, label for MarginMSE)",
}


@contextmanager
def _full_precision(model: torch.nn.Module) -> Iterator[None]:
    """Score with the model's own forward: under bf16/fp16 training accelerate replaces ``model.forward`` with an
    autocast wrapper, and an evaluator would judge a half-precision model instead of the fp32 one that is saved
    (and that best-model selection keeps)."""
    original = model.__dict__.get("_original_forward")
    wrapped = model.__dict__.get("forward")
    if original is None or wrapped is None:
        yield
        return
    model.__dict__["forward"] = original
    try:
        yield
    finally:
        model.__dict__["forward"] = wrapped


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


def _positional_pairs(dataset) -> bool:
    """Whether columns read unambiguously as sentence-transformers pairs: two text columns, then label/score."""
    cols = dataset.column_names
    if len(cols) != 3 or cols[2] not in ("label", "score") or any(c in LABEL_COLUMNS for c in cols[:2]):
        return False
    first = dataset[0]
    return all(isinstance(first[c], str) for c in cols[:2])


def _positional_renames(dataset, fmt: str) -> dict[str, str] | None:
    """The renames that give ``dataset`` fastrank's column names for ``fmt`` by position, as sentence-transformers
    reads a loss's columns, when that reading is unambiguous: ``ntuples`` all text columns (query, positive,
    negatives), ``lists`` a text, a list of texts and a list of labels; None otherwise (the error then hints)."""
    cols, first = dataset.column_names, dataset[0]
    if fmt == "pairs":
        return ({old: new for old, new in zip(cols[:2], ("query", "document")) if old != new}
                if _positional_pairs(dataset) else None)
    if any(_id_like(c) for c in cols):
        return None  # an id column read as a query would train on ids: name the columns instead
    if fmt == "ntuples" and len(cols) >= 2 and all(isinstance(first[c], str) for c in cols):
        targets = ["query", "positive"] + [f"negative_{i}" for i in range(1, len(cols) - 1)]
    elif (fmt == "lists" and len(cols) == 3 and isinstance(first[cols[0]], str) and _is_text(first[cols[1]])
          and isinstance(first[cols[1]], list) and isinstance(first[cols[2]], list)
          and all(isinstance(y, (int, float)) and not isinstance(y, bool) for y in first[cols[2]])):
        targets = ["query", "documents", "labels"]
    else:
        return None
    if any(new in cols and cols.index(new) != i for i, new in enumerate(targets)):
        return None  # a target name sits elsewhere: renaming would swap columns
    return {old: new for old, new in zip(cols, targets) if old != new}


def _id_like(column: str) -> bool:
    """``id``, ``qid``, ``query_id``, ``doc_ids`` ...: a column of identifiers, never a text to score."""
    name = column.lower().replace("-", "_")
    return name in ("id", "ids", "qid", "pid", "docid") or name.endswith(("_id", "_ids"))


_TARGET_NAMES = {
    "pairs": (["query", "document"], "label"),
    "ntuples": (["query", "positive"], None),
    "lists": (["query", "documents"], "labels"),
    "distillation": (["query", "documents"], "scores"),
}


def _is_text(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _rename_hint(dataset, fmt: str) -> str:
    """A ``dataset.rename_columns({...})`` call that maps the text columns by position onto ``fmt``'s names, and
    the one non-text column (if there is exactly one) onto its label name."""
    text_names, label_name = _TARGET_NAMES[fmt]
    cols, first = dataset.column_names, dataset[0]
    texts = [c for c in cols if c not in LABEL_COLUMNS and _is_text(first[c])]
    others = [c for c in cols if c not in texts]
    targets = list(text_names)
    if fmt == "ntuples":
        targets += [f"negative_{i}" for i in range(1, len(texts) - 1)]
    mapping = {old: new for old, new in zip(texts, targets) if old != new}
    if label_name is not None and len(others) == 1 and others[0] not in LABEL_COLUMNS:
        mapping[others[0]] = label_name
    hint = f"Rename them, e.g. dataset = dataset.rename_columns({mapping!r})" if mapping else ""
    if label_name is not None and not others:
        hint += ("; also n" if hint else "N") + f"ame the label column {label_name!r}"
    return f"{hint} (order matters: {_FORMAT_COLUMNS[fmt]}). " if hint else ""


def _refuse_multi_dataset(train_dataset, loss) -> None:
    """sentence-transformers trains on a DatasetDict with a dict of losses; fastrank takes one dataset, one loss."""
    if isinstance(train_dataset, dict) or isinstance(loss, dict):
        names = list(train_dataset) if isinstance(train_dataset, dict) else list(loss)
        raise ValueError(
            f"multi-dataset training (a DatasetDict / dict of datasets {names} or a dict of losses) is not supported "
            "by fastrank's CrossEncoderTrainer: pass one datasets.Dataset and one loss, e.g. "
            "train_dataset=datasets.concatenate_datasets(list(dataset_dict.values())) if they share a format "
            "(same column names), or train on each dataset in turn"
        )


def _run_evaluator(evaluator: Callable[..., dict], model: Any, **context: Any) -> dict[str, float]:
    """``evaluator(model, **context)`` with the context keywords (``output_path``, ``epoch``, ``steps``, as
    sentence-transformers passes them) that it takes: a plain ``def evaluator(model)`` gets the model alone."""
    return evaluator(model, **accepted_keywords(evaluator, context))


class _Evaluators:
    """A list of evaluators run in turn, their results merged, plus ``sequential_score``: the last evaluator's
    primary metric (its first result where it names none), as sentence-transformers' ``SequentialEvaluator``
    reports it for ``metric_for_best_model="eval_sequential_score"``. A result that is a bare number is
    ``evaluator_<i>``."""

    primary_metric = "sequential_score"

    def __init__(self, evaluators: list[Any]) -> None:
        self.evaluators = evaluators

    def __call__(self, model: Any, **context: Any) -> dict[str, float]:
        merged: dict[str, float] = {}
        score = None
        for i, evaluator in enumerate(self.evaluators):
            result = _run_evaluator(evaluator, model, **context)
            if not isinstance(result, dict):
                result = {f"evaluator_{i}": result}
            primary = getattr(evaluator, "primary_metric", None)
            score = result[primary] if primary in result else next(iter(result.values()), None)
            merged.update(result)
        if score is not None:
            merged["sequential_score"] = score
        return merged


def _check_training_prompt(model: CrossEncoder, prompt: str | None) -> None:
    """Warn when the model would score with another prompt than it trains with (sentence-transformers trains with
    ``args.prompts`` only, too): its scores would then come from inputs it was not trained on."""
    scored = getattr(model, "default_prompt", None) or None
    if scored != (prompt or None):
        logger.warning("training with prompt %r, but the model scores with its default prompt %r (predict, rank, "
                       "an export): set CrossEncoderTrainingArguments(prompts=%r) to train as it scores, or give the "
                       "model the prompt it trains with (CrossEncoder(..., prompts={'query': ...}, "
                       "default_prompt_name='query'))", prompt, scored, scored)


def _default_loss(model: CrossEncoder):
    from fastrank.losses import BinaryCrossEntropyLoss, CrossEntropyLoss

    return BinaryCrossEntropyLoss(model) if model.num_labels == 1 else CrossEntropyLoss(model)


class CrossEncoderTrainer(Trainer):
    """Train a :class:`~fastrank.CrossEncoder` with a fastrank loss.

    Args:
        model: the cross-encoder to train.
        args: :class:`CrossEncoderTrainingArguments` (defaults are used when omitted).
        train_dataset / eval_dataset: ``datasets.Dataset`` in the loss's format (see ``fastrank.data``); a pairs
            dataset may also go by position as in sentence-transformers (two text columns, then ``label`` or
            ``score``). eval_dataset may be a dict of datasets; train_dataset may not (one dataset, one loss).
        loss: a loss from ``fastrank.losses`` (or a callable taking the model and returning one); BCE for
            one-label models and cross-entropy otherwise by default.
        evaluator: e.g. :class:`~fastrank.RerankingEvaluator`, run at every evaluation; its metrics are logged
            with the ``eval_`` prefix and can drive ``metric_for_best_model``.
        data_collator: None or a :class:`CrossEncoderCollator` (the losses tokenize, so no other collator fits).
        processing_class, callbacks, optimizers, optimizer_cls_and_kwargs, preprocess_logits_for_metrics: passed
            to ``transformers.Trainer``; compute_metrics is accepted but never called (evaluation reports the loss
            and the evaluator's metrics); model_init is refused. The keywords follow sentence-transformers' order.
    """

    def __init__(
        self,
        model: CrossEncoder | None = None,
        args: CrossEncoderTrainingArguments | None = None,
        train_dataset=None,
        eval_dataset=None,
        loss=None,
        evaluator=None,
        data_collator: CrossEncoderCollator | None = None,
        processing_class=None,
        model_init: Callable[[], CrossEncoder] | None = None,
        compute_metrics: Callable[..., dict] | None = None,
        callbacks=None,
        optimizers=(None, None),
        optimizer_cls_and_kwargs: tuple[type[torch.optim.Optimizer], dict[str, Any]] | None = None,
        preprocess_logits_for_metrics: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        if model_init is not None:
            raise ValueError("CrossEncoderTrainer does not support model_init (the loss holds the model it trains): "
                             "build the model and its loss yourself and pass model=..., loss=...")
        if model is None:
            raise ValueError("CrossEncoderTrainer needs model=: a fastrank.CrossEncoder")
        if not isinstance(model, CrossEncoder):
            raise TypeError(f"model must be a fastrank.CrossEncoder, got {type(model).__module__}."
                            f"{type(model).__name__}; load the same checkpoint with fastrank.CrossEncoder(path) (it "
                            "reads sentence-transformers' CrossEncoder checkpoints and hub ids)")
        if args is not None and not isinstance(args, CrossEncoderTrainingArguments):
            raise TypeError(f"args must be fastrank.training.CrossEncoderTrainingArguments, got "
                            f"{type(args).__module__}.{type(args).__name__}; build CrossEncoderTrainingArguments "
                            "with the same keywords (it sets what fastrank's losses need, e.g. "
                            "remove_unused_columns=False)")
        _refuse_multi_dataset(train_dataset, loss)
        if args is None:
            args = CrossEncoderTrainingArguments(output_dir="runs/fastrank")
        if loss is not None and not isinstance(loss, torch.nn.Module) and callable(loss):
            loss = loss(model)  # as sentence-transformers: a loss class or factory taking the model
        self.loss = loss if loss is not None else _default_loss(model)
        self.evaluator = _Evaluators(list(evaluator)) if isinstance(evaluator, (list, tuple)) else evaluator
        self._loss_evaluation = False
        self._evaluator_prefix: str | None = None
        if train_dataset is not None:
            train_dataset = self._check_dataset("train_dataset", train_dataset)
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: self._check_dataset(f"eval_dataset[{k!r}]", v) for k, v in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = self._check_dataset("eval_dataset", eval_dataset)
        if data_collator is not None and not isinstance(data_collator, CrossEncoderCollator):
            raise ValueError(f"data_collator={type(data_collator).__name__} is not supported: fastrank's losses "
                             "tokenize the text themselves and need fastrank.training.CrossEncoderCollator batches; "
                             "leave data_collator out")
        if data_collator is None:
            first_eval = next(iter(eval_dataset.values())) if isinstance(eval_dataset, dict) else eval_dataset
            columns = train_dataset.column_names if train_dataset is not None else first_eval.column_names
            data_collator = CrossEncoderCollator(columns, args.prompts or "")
        elif args.prompts and data_collator.prompt != args.prompts:
            raise ValueError(f"args.prompts is {args.prompts!r} but the data_collator's prompt is "
                             f"{data_collator.prompt!r}: give the prompt once (leave data_collator out)")
        _check_training_prompt(model, data_collator.prompt or None)
        if compute_metrics is not None:
            logger.warning("compute_metrics is never called: evaluation reports the loss only (as in "
                           "sentence-transformers); pass evaluator=RerankingEvaluator(...) for ranking metrics")
        strategy = args.eval_strategy
        if evaluator is not None and str(getattr(strategy, "value", strategy)) == "no":
            logger.warning("an evaluator was given but eval_strategy is 'no': it runs only when trainer.evaluate() "
                           "is called; pass CrossEncoderTrainingArguments(eval_strategy='epoch') (or 'steps') to run "
                           "it during training")
        if evaluator is not None and eval_dataset is None:
            args.eval_strategy = "no"  # transformers insists on an eval_dataset; the evaluator stands in for it
        try:
            super().__init__(
                model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                eval_dataset=eval_dataset, processing_class=processing_class, compute_metrics=compute_metrics,
                callbacks=callbacks, optimizers=optimizers, optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
                preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            )
        finally:
            args.eval_strategy = strategy
        self.model_accepts_loss_kwargs = False
        self.can_return_loss = True

    def _check_dataset(self, name: str, dataset):
        """Check ``dataset`` fits the loss's format; returns it, with sentence-transformers-style pair columns
        (two text columns, then ``label`` or ``score``) renamed to ``query, document``."""
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "column_names"):
            raise DataError(f"{name} must be a datasets.Dataset, got {type(dataset).__name__}: the trainer groups "
                            "rows by length and needs their number (a streaming IterableDataset has neither); load it "
                            "without streaming=True, or use datasets.Dataset.from_list(list(rows))")
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
        if expected is None or expected(cols):
            return dataset
        renames = _positional_renames(dataset, fmt)
        if renames is not None:
            logger.info("%s: columns %s read by position (as sentence-transformers): %s", name, cols, renames)
            return dataset.rename_columns(renames)
        raise DataError(
            f"{type(self.loss).__name__} expects the {fmt!r} format ({_FORMAT_COLUMNS[fmt]}), but {name} has "
            f"columns {cols}. {_rename_hint(dataset, fmt)}For a file, convert with "
            f"fastrank.data.load_dataset(path, data_format={fmt!r})."
        )

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        """The loss of one collated batch (``inputs``: the text columns, labels and prompt): ``self.loss`` scores
        through ``model`` (a DDP wrapper too, so gradients synchronise)."""
        inner = self.accelerator.unwrap_model(model)
        inner.score_prompt = inputs.get("prompt")  # the collator's prompt: score() puts it before every query
        try:
            if model is inner:
                loss = self.loss(inputs["inputs"], inputs.get("label"))
            else:
                # The loss holds the bare CrossEncoder as a submodule; for this call an instance attribute shadows
                # it with a view that scores through the wrapper (DDP), so gradient-sync hooks run.
                self.loss.__dict__["model"] = _ModelView(model, inner)
                try:
                    loss = self.loss(inputs["inputs"], inputs.get("label"))
                finally:
                    del self.loss.__dict__["model"]
        finally:
            inner.score_prompt = None
        return (loss, {}) if return_outputs else loss

    def prediction_step(self, model: torch.nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[torch.Tensor, None, None]:
        """The evaluation loss of a batch, without gradients; no predictions (an evaluator scores the model)."""
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def _remove_unused_columns(self, dataset, description: str | None = None):
        """Every column is used: the losses tokenize the text columns themselves. transformers would keep only the
        columns the model's forward takes (token ids, none here), so ``remove_unused_columns=True`` failed with
        ``KeyError: 'query'``."""
        return dataset

    def _get_collator_with_removed_columns(self, data_collator, description: str | None = None):
        """The collator as it is (see ``_remove_unused_columns``)."""
        return data_collator

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed  # as transformers' own
        if dataset is not None and getattr(self.args, "batch_sampler", None) == "no_duplicates":
            text_columns = self.data_collator.text_columns
            return NoDuplicatesSampler([row_texts(row, text_columns) for row in dataset], self.args.train_batch_size,
                                       seed=seed)
        if not self.args.group_by_pair_length or dataset is None:
            return super()._get_train_sampler(train_dataset)
        text_columns = self.data_collator.text_columns
        lengths = [row_length(row, text_columns) for row in dataset]
        return EpochLengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths,
                                         seed=seed)

    def train(self, *args: Any, **kwargs: Any):
        """``transformers.Trainer.train``; afterwards the model scores in full precision again (mixed-precision
        training leaves an autocast wrapper on its forward, so ``predict`` would differ from the saved model), and a
        head that was fresh counts as trained (``export_model`` refuses an untrained one)."""
        self._fill_card()
        try:
            output = super().train(*args, **kwargs)
        finally:
            self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
        self.accelerator.unwrap_model(self.model).head_initialized = False  # trained now: it may be exported
        return output

    def _fill_card(self) -> None:
        """This run's training facts on the model card (base model, training rows, loss, hyperparameters; an
        evaluation of the weights before is dropped): checkpoints and a pushed model had an empty card, or the base
        checkpoint's facts, when the trainer was used directly. The card fields a user sets (model_name, language,
        license, train_datasets) stay; ``fastrank train`` writes its own, fuller facts after training."""
        inner = self.accelerator.unwrap_model(self.model)
        args, card = self.args, inner.card_data
        card.pop("evaluation", None)
        card["base_model"] = base_model_name(inner.name_or_path)
        if self.train_dataset is not None:
            card["train_data"] = f"{len(self.train_dataset)} rows, columns {self.train_dataset.column_names}"
        card["loss"] = type(self.loss).__name__
        card["hyperparameters"] = {
            "epochs": args.num_train_epochs, "max_steps": args.max_steps, "lr": args.learning_rate,
            "batch_size": args.per_device_train_batch_size, "max_length": inner.max_length,
            "warmup_steps": args.warmup_steps, "weight_decay": args.weight_decay,
            "scheduler": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)), "seed": args.seed,
            "bf16": args.bf16}

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The loss on ``eval_dataset`` (or the trainer's; a dict gives one loss per dataset, prefixed with its name)
        and the evaluator's metrics, run once and given ``output_dir/eval`` to write its results to, as
        sentence-transformers does. Callbacks and the log see one evaluation: the evaluator's metrics join the (first)
        loss evaluation's, so early stopping and best-model tracking can watch either."""
        if self._loss_evaluation:  # transformers' call per dataset of a dict
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: self._check_dataset(f"eval_dataset[{k!r}]", v) for k, v in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = self._check_dataset("eval_dataset", eval_dataset)
        if eval_dataset is not None or self.eval_dataset is not None:
            self._loss_evaluation = True
            self._evaluator_prefix = metric_key_prefix if self.evaluator is not None else None
            try:
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            finally:
                self._loss_evaluation = False
                self._evaluator_prefix = None
        if self.evaluator is None:
            raise ValueError("CrossEncoderTrainer.evaluate() has nothing to evaluate: give the trainer an "
                             "eval_dataset (its loss is reported) or an evaluator (e.g. RerankingEvaluator, for "
                             "ranking metrics), or pass evaluate(eval_dataset=...)")
        start = time.perf_counter()
        scored = self._evaluator_metrics(metric_key_prefix)
        scored[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 4)  # as transformers reports it
        scored["epoch"] = self.state.epoch
        self.log(scored)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, scored)
        return scored

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        """transformers' loop (the loss), plus the evaluator's metrics in the first loop of an ``evaluate`` call."""
        output = super().evaluation_loop(*args, **kwargs)
        prefix, self._evaluator_prefix = self._evaluator_prefix, None
        if prefix is not None:
            output.metrics.update(self._evaluator_metrics(prefix))
        return output

    def _evaluator_metrics(self, metric_key_prefix: str) -> dict[str, float]:
        """The evaluator run on the unwrapped full-precision model, its metrics prefixed (a key that has the prefix
        already keeps it; a bare number is ``evaluator``, as in sentence-transformers)."""
        inner = self.accelerator.unwrap_model(self.model)
        output_path = None
        if self.is_world_process_zero():
            output_path = os.path.join(self.args.output_dir, "eval")
            os.makedirs(output_path, exist_ok=True)
        epoch = -1 if self.state.epoch is None else self.state.epoch
        with _full_precision(inner):
            scores = _run_evaluator(self.evaluator, inner, output_path=output_path, epoch=epoch,
                                    steps=self.state.global_step)
        if not isinstance(scores, dict):
            scores = {"evaluator": scores}
        prefix = f"{metric_key_prefix}_"
        return {(k if str(k).startswith(prefix) else prefix + str(k)): float(v) for k, v in scores.items()}

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        if not self.args.should_save:
            return
        output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.unwrap_model(self.model).write_checkpoint(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def create_model_card(self, language: str | None = None, license: str | None = None, tags: Any = None,
                          model_name: str | None = None, finetuned_from: str | None = None, tasks: Any = None,
                          dataset_tags: Any = None, dataset: Any = None, dataset_args: Any = None) -> None:
        """fastrank's card in ``output_dir``, as ``trainer.push_to_hub()`` uploads it: transformers' own card knows
        nothing of how the model scores and replaced it (and fastrank_card.json named local paths). ``model_name``,
        ``language``, ``license`` and ``dataset`` (as train datasets) go on the card, local paths cut to their names
        (``public_card_data``); the other keywords are transformers' and are not used."""
        if not self.is_world_process_zero():
            return
        inner = self.accelerator.unwrap_model(self.model)
        defaults = {Path(self.args.output_dir).name, (self.args.hub_model_id or "").split("/")[-1]}
        if model_name in defaults and inner.card_data.get("model_name"):
            model_name = None  # transformers' default (the repo's or folder's name) does not replace the card's
        datasets = [dataset] if isinstance(dataset, str) else dataset
        extra = card_fields({"model_name": model_name, "language": language, "license": license,
                             "train_datasets": datasets})
        write_card(inner, Path(self.args.output_dir), card_data=public_card_data({**inner.card_data, **extra}))

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """A push while training (``push_to_hub=True``): transformers copies only the weights and config out of the
        checkpoint, so the tokenizer, sentence-transformers' config and fastrank's card were never uploaded; the
        whole model is written to ``output_dir`` first (its card without local paths), then pushed as usual. Not
        while an earlier push still uploads that folder (transformers skips this push then): its files stay whole."""
        strategy = str(getattr(self.args.hub_strategy, "value", self.args.hub_strategy))
        pending = getattr(self, "push_in_progress", None)
        busy = not self.args.hub_always_push and pending is not None and not pending.is_done()
        if self.is_world_process_zero() and self.args.should_save and strategy != "end" and not busy:
            inner = self.accelerator.unwrap_model(self.model)
            inner.write_checkpoint(self.args.output_dir, card_data=public_card_data(inner.card_data))
        super()._push_from_checkpoint(checkpoint_folder)

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
