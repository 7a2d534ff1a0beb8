"""The default training recipe behind ``fastrank train``: one function that returns what happened.

``train(TrainConfig(...))`` loads the base model, converts the data into the loss's format, trains with the
CrossEncoderTrainer, evaluates before and after on the eval data, and saves the model atomically (an
interrupted run never leaves a directory at ``out`` that looks like a finished model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fastrank.errors import DataError, FastrankError, LossConfigError
from fastrank.model_card import base_model_name

logger = logging.getLogger(__name__)


def cpu_supports_bf16() -> bool:
    """True when bf16 matmuls are fast here: a CUDA GPU with bf16, or a CPU with avx512_bf16 / AMX."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


@dataclass
class TrainConfig:
    """Everything ``fastrank train`` needs; defaults are the recipe measured in bench/RESULTS.md."""

    data: str
    out: str
    base: str = "sentence-transformers/all-MiniLM-L6-v2"
    loss: str = "listnet"
    epochs: float = 3.0
    lr: float = 1e-4
    batch_size: int = 8
    max_length: int = 256
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    scheduler: str = "linear"
    max_documents: int | None = None
    num_negatives: int = 1
    mine_negatives: int = 0
    answer_negatives: int = 0
    mining_options: dict[str, Any] = field(default_factory=lambda: {"range_max": 50, "relative_margin": 0.05})
    loss_options: dict[str, Any] = field(default_factory=dict)
    first_stage_weight: float = 0.0
    first_stage_model: str = "sentence-transformers/all-MiniLM-L6-v2"  # mines, picks answer negatives, is the prior
    first_stage_prompts: dict[str, str] | None = None  # its "query" / "document" prompts (None: its saved ones)
    eval_data: str | None = None
    data_split: str = "train"  # with a BEIR folder or a hub dataset as data: the split trained on
    eval_each_epoch: bool = False
    bf16: str = "auto"
    seed: int = 12
    checkpoint_dir: str | None = None
    resume: bool = False
    show_progress_bar: bool = True
    prompt: str | None = None  # put before every query in training, saved as the model's default prompt

    def check(self) -> None:
        """Refuse settings that cannot train, saying what was wrong and what is accepted (ValueError); ``train`` calls
        it before anything loads."""
        from fastrank.batching import check_seed, is_integer  # here: the CLI reads TrainConfig's defaults without numpy
        from fastrank.data import check_split

        _check_number("epochs", self.epochs, "a finite number > 0 (fractions train part of an epoch)", low=0.0)
        check_split(self.data, self.data_split, "data_split")
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise ValueError(f"prompt must be a string put before every query (e.g. 'query: ') or None (the base "
                             f"model's own default prompt, if any), got {self.prompt!r}")
        _check_number("lr", self.lr, "a finite number > 0, e.g. 1e-4", low=0.0)
        _check_number("weight_decay", self.weight_decay, "a finite number >= 0 (0 = no weight decay)", low=0.0,
                      low_ok=True)
        check_warmup_ratio(self.warmup_ratio)
        if not is_integer(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        check_seed(self.seed)
        if self.max_documents is not None and (not is_integer(self.max_documents) or self.max_documents < 1):
            raise ValueError(f"max_documents must be None (keep every document of a list) or an integer >= 1 (the "
                             f"most documents per training list), got {self.max_documents!r}")
        for name in ("mine_negatives", "answer_negatives"):
            value = getattr(self, name)
            if not is_integer(value) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0 = none), got {value!r}")
        if self.mine_negatives:
            from fastrank.mining import check_mining_options

            low, high = self.mining_options.get("range_min", 0), self.mining_options.get("range_max", 50)
            if is_integer(low) and is_integer(high) and self.mine_negatives > high - low:
                raise ValueError(f"mine_negatives={self.mine_negatives} is more than the {high - low} documents "
                                 f"negatives are mined from (each query's top {high} by the embedding model, "
                                 f"mining_options range_max): ask for at most {high - low}")

            try:
                check_mining_options(num_negatives=self.mine_negatives, **self.mining_options)
            except ValueError as exc:
                raise ValueError(f"mine_negatives={self.mine_negatives} with mining_options {self.mining_options}: "
                                 f"{exc}") from None
        _check_number("first_stage_weight", self.first_stage_weight, "a finite number >= 0 (0 = no first-stage "
                      "prior)", low=0.0, low_ok=True)
        prompts = self.first_stage_prompts
        if prompts is not None and not (isinstance(prompts, dict) and set(prompts) <= {"query", "document"}
                                        and all(isinstance(v, str) for v in prompts.values())):
            raise ValueError("first_stage_prompts must be None (the embedding model's saved prompts) or a dict of "
                             f"'query' and/or 'document' to the text put before them, got {prompts!r}")
        if prompts and not self.uses_embedding_model:
            raise ValueError("first_stage_prompts are for the embedding model, which only mine_negatives, "
                             "answer_negatives and first_stage_weight use; none of them is set")
        if self.first_stage_weight:
            from fastrank.losses import LOSSES, loss_class

            if not hasattr(loss_class(self.loss), "set_prior"):
                accepted = ", ".join(name for name, cls in LOSSES.items() if hasattr(cls, "set_prior"))
                raise ValueError(f"first_stage_weight needs a listwise loss ({accepted}); {self.loss!r} is not one")

    @property
    def uses_embedding_model(self) -> bool:
        """Whether training loads ``first_stage_model``: to mine negatives, pick answer negatives or be the prior."""
        return bool(self.mine_negatives or self.answer_negatives or self.first_stage_weight)

    def resolved_bf16(self) -> bool:
        """``bf16`` as a bool: ``auto`` is True where bf16 matmuls are fast here (``cpu_supports_bf16``)."""
        if self.bf16 not in ("auto", "true", "false", True, False):
            raise ValueError(f"bf16 must be 'auto', 'true' or 'false', got {self.bf16!r}")
        return cpu_supports_bf16() if self.bf16 == "auto" else self.bf16 in ("true", True)


def check_warmup_ratio(value: Any) -> None:
    """ValueError unless ``value`` is a warmup fraction in [0, 1) (TrainConfig and CrossEncoderTrainingArguments)."""
    _check_number("warmup_ratio", value, "a fraction of the optimizer steps in [0, 1), e.g. 0.1 = the first 10% of "
                  "the steps warm the learning rate up", low=0.0, low_ok=True, high=1.0)


def _check_number(name: str, value: Any, accepted: str, *, low: float, low_ok: bool = False,
                  high: float | None = None) -> None:
    """ValueError saying ``name`` must be ``accepted`` unless ``value`` is a finite real number (not a bool) above
    ``low`` (or equal to it with ``low_ok``) and below ``high``."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    fits = real and math.isfinite(value) and (value >= low if low_ok else value > low)
    if not fits or (high is not None and value >= high):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")


MIN_USEFUL_STEPS = 10  # below this a run is mostly warm-up: warn


RUN_RECORD = "fastrank_run.json"  # in the checkpoint directory: the settings its checkpoints were trained with
# Settings that do not change what is trained (where it goes, how it is shown, what it is evaluated on), and epochs,
# which a resumed run may raise to train on.
_NOT_CHECKED_ON_RESUME = ("out", "checkpoint_dir", "resume", "show_progress_bar", "eval_data", "eval_each_epoch",
                          "epochs")
# Inputs compared by what they hold, not by how their path is written (relative, absolute, moved).
_INPUTS = ("data", "base", "first_stage_model")


def _checkpoints(ckpt_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders in ``ckpt_dir``, newest (highest N) first."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True)


def _complete(checkpoint: Path) -> bool:
    """Whether transformers finished writing ``checkpoint``: trainer_state.json, the last file it writes (after the
    weights, optimizer, scheduler and RNG state), is there and reads."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _last_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``ckpt_dir`` (None when there is none): a run stopped while writing
    one leaves it incomplete, and the one before it is where to resume."""
    return next((p for p in _checkpoints(ckpt_dir) if _complete(p)), None)


def _drop_incomplete(ckpt_dir: Path, last: Path) -> None:
    """Remove the checkpoints newer than ``last`` that were never finished (the resumed run writes them again)."""
    for checkpoint in _checkpoints(ckpt_dir):
        if checkpoint == last:
            return
        logger.warning("removing %s: it was not finished (the run stopped while writing it); resuming from %s",
                       checkpoint, last.name)
        shutil.rmtree(checkpoint, ignore_errors=True)


def _content_sha256(location: str) -> str:
    """What a local file or folder holds (sha256 over its files' relative paths and bytes; a model folder's weights
    and config only), else the hub id as given."""
    from fastrank.export.manifest import feed_file, source_sha256

    path = Path(location).expanduser()
    if path.is_dir():
        try:
            return source_sha256(path)[0]  # a model folder
        except ValueError:
            files = sorted(p for p in path.rglob("*") if p.is_file())
    elif path.is_file():
        files = [path]
    else:
        return f"id {location}"
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        feed_file(digest, file)
    return digest.hexdigest()


def _run_record(config: TrainConfig, bf16: bool) -> dict[str, Any]:
    """What the checkpoints of a run depend on: its settings (JSON-normalised) and its inputs' contents."""
    settings = {k: v for k, v in asdict(config).items() if k not in _NOT_CHECKED_ON_RESUME + _INPUTS}
    if config.prompt is None:  # the base's own default prompt, which the run trains with (recorded when it has one)
        from fastrank.model import saved_default_prompt

        base_prompt = saved_default_prompt(config.base)
        settings.update({"base_prompt": base_prompt} if base_prompt else {})
    inputs = {name: _content_sha256(str(getattr(config, name))) for name in _INPUTS}
    return json.loads(json.dumps({"settings": settings | {"bf16": bf16}, "inputs": inputs}, default=str))


def _check_same_run(ckpt_dir: Path, record: dict[str, Any]) -> None:
    """FastrankError naming every setting (and the data) that differs from the run whose checkpoints ``resume``
    would continue: their optimizer, schedule and data order belong to that run. Only ``epochs`` may change."""
    path = ckpt_dir / RUN_RECORD
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("%s has no readable %s (checkpoints written by an older fastrank): resuming without checking "
                       "that this run's settings and data are the ones they were trained with", ckpt_dir, RUN_RECORD)
        return
    old, new = saved.get("settings", {}), record["settings"]
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    old = {k: old.get(k, defaults.get(k)) for k in set(old) | set(new)}  # a setting added since: its default then
    changed = [f"{k} {old[k]!r} -> {new.get(k)!r}" for k in sorted(old) if old[k] != new.get(k)]
    changed += [f"what {name} holds" for name in _INPUTS
                if saved.get("inputs", {}).get(name) != record["inputs"][name]]
    if changed:
        raise FastrankError(f"--resume: the checkpoints in {ckpt_dir} belong to a run with other settings ("
                            f"{'; '.join(changed)}); resume with that run's settings (only --epochs may change), or "
                            "drop --resume to start afresh")


def _start_afresh(ckpt_dir: Path, record: dict[str, Any]) -> None:
    """A new run (no resume): an earlier unfinished run's checkpoints are removed (the trainer would keep the
    higher-numbered of theirs and its own, and a later resume would continue the wrong run), then this run's
    settings are recorded for a resume to check."""
    stale = _checkpoints(ckpt_dir)
    if stale:
        logger.warning("starting afresh: removing %d checkpoint(s) of an earlier unfinished run in %s (--resume "
                       "would have continued it)", len(stale), ckpt_dir)
        for checkpoint in stale:
            shutil.rmtree(checkpoint, ignore_errors=True)
    from fastrank.io import atomic_file

    with atomic_file(ckpt_dir / RUN_RECORD) as f:
        json.dump(record, f, indent=2)


def _check_inputs_outside(ckpt_dir: Path, inputs: list[str | None], removed: bool) -> None:
    """FastrankError when an input would be deleted with the checkpoints: the trainer deletes older
    ``checkpoint-N`` folders, and a finished run removes the default checkpoint directory (``removed``) as a whole,
    so a base restarted from ``OUT.checkpoints/checkpoint-N`` would go."""
    root = ckpt_dir.expanduser().resolve()
    for item in inputs:
        source = Path(item).expanduser().resolve() if item else None
        if source is None or not source.exists() or not (source == root or root in source.parents):
            continue
        inside = source.relative_to(root).parts
        if removed or (inside and inside[0].startswith("checkpoint-")):
            what = ("the folder is removed when the run ends; choose another --out" if removed
                    else "older checkpoint-N folders are deleted; choose another checkpoint directory")
            raise FastrankError(f"the input {source} is inside {root}, where training keeps its checkpoints ({what}), "
                                "or copy it elsewhere first")


def _damaged_file(checkpoint: Path) -> str | None:
    """The first file of a finished checkpoint that cannot be read whole (a safetensors header or size that does
    not add up, a torch zip archive that fails its checksums), with the reason; None when all read."""
    import zipfile

    from fastrank.model import _damaged_weights

    damaged = _damaged_weights(str(checkpoint))
    if damaged:
        return f"{damaged[0].name} ({damaged[1]})"
    for file in sorted(checkpoint.glob("*.pt")) + sorted(checkpoint.glob("*.pth")):
        try:
            with zipfile.ZipFile(file) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError) as exc:
            return f"{file.name} ({exc})"
        if bad is not None:
            return f"{file.name} (its entry {bad} fails its checksum)"
    return None


def _check_resumable(ckpt_dir: Path) -> Path:
    """The checkpoint ``resume`` continues from: the last finished one, which must read. Refused at once, before
    any loading or training creates anything, rather than with transformers' error (or a traceback) after the model
    has loaded."""
    last = _last_checkpoint(ckpt_dir)
    damaged = _damaged_file(last) if last is not None else None
    if damaged:
        raise FastrankError(f"--resume: {last} is damaged: {damaged} cannot be read; delete that folder to resume "
                            "from an earlier checkpoint, or drop --resume to start afresh")
    if last is None:
        unfinished = [p.name for p in _checkpoints(ckpt_dir)]
        found = f" ({', '.join(unfinished)}: not finished, the run stopped while writing it)" if unfinished else ""
        raise FastrankError(f"--resume: no complete checkpoint in {ckpt_dir}{found} (a run that saved at least one "
                            "epoch writes one); drop --resume to start afresh")
    return last


def _check_epochs_left(checkpoint: Path, epochs: float) -> None:
    """FastrankError when ``epochs`` ends before the optimizer steps ``checkpoint`` has trained already: the trainer
    would run nothing and save the checkpoint's model as if it had trained ``epochs``. Counted in steps, as the
    trainer counts a fraction of an epoch (rounded up to a whole step), so the run's own ``epochs`` passes."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    done, steps = float(state.get("epoch") or 0.0), int(state.get("global_step") or 0)
    if not done or not steps:
        return
    per_epoch = steps / done
    if math.ceil(epochs * per_epoch - 1e-6) < steps:
        least = next(f"{done:.{digits}g}" for digits in range(4, 18)
                     if math.ceil(float(f"{done:.{digits}g}") * per_epoch - 1e-6) >= steps)
        raise FastrankError(f"--resume: {checkpoint} has trained {steps} optimizer steps ({done:.4g} epochs), more "
                            f"than --epochs {epochs:g} makes; give --epochs {least} or more (more trains on from it), or "
                            "drop --resume to start afresh")


def _resumed_step(checkpoint: Path | None) -> int:
    """The optimizer step a run resumed from ``checkpoint`` starts from (0 for a fresh run)."""
    if checkpoint is None:
        return 0
    return int(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8")).get("global_step", 0))


def _count_pairs(columns: dict[str, list], data_format: str) -> int:
    if data_format in ("lists", "distillation") and "documents" in columns:
        return sum(len(d) for d in columns["documents"])
    text_cols = [c for c in columns if c not in ("label", "labels", "score", "scores")]
    return len(columns["query"]) * (len(text_cols) - 1)


def _loss_options(config: TrainConfig) -> dict[str, Any]:
    """The user's loss options, checked against the loss (``loss_class``); listwise losses score the whole batch in
    one forward pass unless told otherwise (with length-grouped batches that is the fastest choice, and memory
    stays small for reranking lists)."""
    from fastrank.losses import loss_class

    options = dict(config.loss_options)
    if getattr(loss_class(config.loss), "data_format", None) == "lists":
        options = {"mini_batch_size": 0, **options}
    loss_class(config.loss, options)
    return options


def _embedding_model(config: TrainConfig) -> Any:
    """The embedding model that mines negatives, picks answer negatives and is the first-stage prior: the first stage
    a reranker is trained for (``first_stage_model``, with ``first_stage_prompts`` over its saved ones)."""
    from fastrank.embedding import EmbeddingModel

    return EmbeddingModel(config.first_stage_model, prompts=config.first_stage_prompts)


def _add_mined_negatives(groups: list, config: TrainConfig, embedder: Any) -> dict[str, Any]:
    """Add ``mine_negatives`` hard negatives per query, mined by the embedding model from every document of the training
    data itself (other queries' candidates; a BEIR folder's corpus.jsonl): teaches the reranker to reject off-topic
    passages that a first-stage retriever brings, which candidate lists drawn from one source never show it."""
    from fastrank.data import read_corpus
    from fastrank.evaluation.beir import is_beir_dir
    from fastrank.mining import mine_hard_negatives

    beir = is_beir_dir(config.data)  # its corpus, not only the judged documents the groups hold
    corpus = read_corpus(Path(config.data).expanduser() / "corpus.jsonl") if beir else None
    result = mine_hard_negatives(groups, embedder, corpus, num_negatives=config.mine_negatives,
                                 keep_original_negatives=True, seed=config.seed, **config.mining_options)
    mined = iter(result.groups)  # one per group with a positive, in order (two queries may share a text)
    for g in groups:
        if g.positives:
            m = next(mined)
            g.documents, g.labels = m.documents, m.labels
    return result.stats


def _add_answer_negatives(groups: list, config: TrainConfig, embedder: Any) -> dict[str, Any]:
    """Add ``answer_negatives`` other queries' positives per query as negatives: the closest two thirds by the
    embedding model, the rest at random, as measured in bench/RESULTS.md (``fastrank.mining.add_answer_negatives``).
    After retrieval, a reranker trained only on same-topic candidates prefers an answer-shaped sentence about
    another subject to the right one."""
    from fastrank.mining import add_answer_negatives

    n = config.answer_negatives
    closest = (2 * n + 1) // 3  # 5 -> 3 + 2, 12 -> 8 + 4
    result = add_answer_negatives(groups, embedder, closest=closest, random_count=n - closest,
                                  relative_margin=config.mining_options.get("relative_margin", 0.05),
                                  seed=config.seed, show_progress_bar=config.show_progress_bar)
    groups[:] = result.groups
    return result.stats


def _set_first_stage_prior(loss, config: TrainConfig, embedder: Any) -> Any:
    """Train against ``logit + first_stage_weight * embedding score`` (``fastrank.losses.prior``); returns the prior."""
    from fastrank.losses.prior import EmbeddingPrior

    prior = EmbeddingPrior(embedder)
    loss.set_prior(prior, config.first_stage_weight)
    return prior


def _title_separator(groups: list, base: str) -> str | None:
    """The base tokenizer's pair separator when the data has titled documents (``fastrank.documents``), else None:
    titles are joined as the trained model will read them at rerank time."""
    if all(isinstance(d, str) for g in groups for d in g.documents):
        return None
    from transformers import AutoTokenizer

    from fastrank.documents import pair_separator
    from fastrank.model import resolve_model_path

    return pair_separator(AutoTokenizer.from_pretrained(resolve_model_path(base)).backend_tokenizer)


def _class_count(groups: list, loss: str) -> int:
    """Classes a multi-class loss predicts: the labels are class ids 0..C-1, so C = the largest + 1 (at least 2)."""
    top = -1
    for g in groups:
        for y in g.labels:
            if not (math.isfinite(y) and y >= 0 and y == int(y)):
                raise DataError(f"--loss {loss} (CrossEntropyLoss) needs class ids as labels (whole numbers 0, 1, ..., "
                                f"C-1), but query {g.query_id or g.query!r} has label {y:g}; for graded or float "
                                "relevance scores use bce, mse or a listwise loss")
            top = max(top, int(y))
    if top < 1:
        raise DataError(f"--loss {loss} (CrossEntropyLoss) needs at least two classes (labels 0..C-1), but every "
                        "label in the data is 0")
    return top + 1


def _check_unit_labels(config: TrainConfig, groups: list) -> None:
    """bce reads labels as probabilities: a label outside [0, 1] (a graded 2 or 3) is refused before the model
    loads, naming the query, instead of failing mid-training at the first batch that holds one."""
    from fastrank.losses import BinaryCrossEntropyLoss, loss_class

    if not issubclass(loss_class(config.loss), BinaryCrossEntropyLoss):
        return
    for g in groups:
        bad = next((y for y in g.labels if not 0.0 <= y <= 1.0), None)
        if bad is not None:
            raise DataError(f"--loss {config.loss} (BinaryCrossEntropyLoss) needs labels in [0, 1], but query "
                            f"{g.query_id or g.query!r} of {config.data} has label {bad:g}; for graded labels use mse, "
                            "a listwise loss (listnet, lambda, plistmle) or ce (labels as class ids)")


def _check_negatives(config: TrainConfig, groups: list) -> None:
    """A DataError when the data gives the loss nothing to tell apart, so that it would train to nothing, silently
    (a BEIR folder's qrels usually list relevant documents only, all 1): for a listwise loss, no list holding two
    different labels; for the others, one and the same positive label on every document. Graded (1 and 2) or soft
    labels pass; distillation (teacher scores) and in-batch negatives alone (mnrl with ``num_negatives=0``) need no
    negative."""
    from fastrank.evaluation.beir import is_beir_dir
    from fastrank.losses import loss_class

    fmt = getattr(loss_class(config.loss), "data_format", None)
    if fmt == "distillation" or (fmt == "ntuples" and config.num_negatives == 0):
        return
    if fmt == "lists":  # a listwise loss learns within lists: one with two labels is enough
        if any(len(set(g.labels)) > 1 for g in groups):
            return
        problem = f"no training list holds two different labels: {config.loss} ranks documents within a list"
    else:
        labels = {y for g in groups for y in g.labels}
        if len(labels) != 1 or min(labels) <= 0:
            return
        problem = (f"every training document is relevant, with label {labels.pop():g}: {config.loss} has no "
                   "negative to rank them against")
    hint = (" A BEIR folder's qrels usually list relevant documents only: add --mine-negatives N (mined from its "
            "corpus.jsonl), or mine first: fastrank mine --data DIR --corpus DIR/corpus.jsonl --out mined.jsonl."
            if is_beir_dir(config.data) else " Add negatives (label 0), or --mine-negatives N.")
    raise DataError(f"{problem}, and would train to nothing.{hint}")


def _drop_lists_without_margin(config: TrainConfig, groups: list) -> list:
    """margin-mse learns teacher margins between a query's first document and the others: a query with one
    document (mining can leave one without negatives) has none, and is left out with a warning."""
    from fastrank.losses import MarginMSELoss, loss_class

    if not issubclass(loss_class(config.loss), MarginMSELoss):
        return groups
    kept = [g for g in groups if len(g.documents) >= 2]
    if len(kept) < len(groups):
        first = next(g for g in groups if len(g.documents) < 2)
        logger.warning("%d of %d queries have a single document and no margin to learn; left out (first: %r)",
                       len(groups) - len(kept), len(groups), first.query_id or first.query)
    return kept


def _num_labels(config: TrainConfig, groups: list) -> int:
    """The label count to load the base with: 1 for the ranking losses, the data's class count for a multi-class loss
    (ce). A base whose trained head has another count is refused here with what to do, not by transformers'
    size-mismatch error once the weights load (or, for a larger head, by ranking with a class never trained)."""
    from fastrank.losses import CrossEntropyLoss, loss_class
    from fastrank.model import load_config, resolve_model_path, trained_head_labels

    multi_class = issubclass(loss_class(config.loss), CrossEntropyLoss)
    needed = _class_count(groups, config.loss) if multi_class else 1
    head = trained_head_labels(load_config(config.base, resolve_model_path(config.base)))  # a bad base fails here
    if head is None:
        return needed
    if head == needed:
        return head
    if multi_class:
        unused = (f"; the model ranks by its last class ({head - 1}), which no label of the data would train"
                  if head > needed else "")
        raise LossConfigError(
            f"--loss {config.loss}: the data has {needed} classes (labels 0..{needed - 1}) but the base "
            f"{config.base!r} is a cross-encoder checkpoint with {head} label(s){unused}; train from a base model "
            f"without a classification head (e.g. {TrainConfig.base}), which gets a fresh {needed}-label head, or "
            f"from a checkpoint with exactly {needed} labels")
    raise LossConfigError(
        f"--loss {config.loss} trains one relevance logit, but the base {config.base!r} is a cross-encoder checkpoint "
        f"with {head} labels; train its classes with --loss ce (labels are class ids), or start from a one-label "
        f"checkpoint or a base model without a classification head (e.g. {TrainConfig.base})")


class _ScoredEvaluator:
    """The evaluator as the trainer calls it each epoch (``eval_each_epoch``): judging ``scorer(model)``, the same
    score as the before/after report, instead of the bare model's logits."""

    def __init__(self, evaluator: Any, scorer: Callable[[Any], Any]) -> None:
        self.evaluator, self.scorer = evaluator, scorer

    def __call__(self, model: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        return self.evaluator(self.scorer(model), *args, **kwargs)


def _scorer_factory(prior: Any, weight: float) -> Callable[[Any], Any]:
    """``model -> what the evaluator judges``: the score the model is trained to produce (logit + weight * the
    first-stage prior, else the model itself; the evaluator ranks a multi-class model by its last class)."""
    def make(model: Any) -> Any:
        if prior is not None:
            from fastrank.losses.prior import PriorReranker

            return PriorReranker(model, prior, weight)
        return model

    return make


def _epochs_run(state: Any, asked: float) -> tuple[float, str | None]:
    """Epochs the trainer ran (its state's epoch) and, when they differ from ``asked``, why: a run is a whole number
    of optimizer steps, so a fraction of an epoch rounds up to the next step."""
    run = float(state.epoch or 0.0)
    if math.isclose(run, asked, rel_tol=1e-4) or not state.global_step:
        return round(run, 4), None
    step = run / state.global_step
    unit = "epoch" if step == 1 else "epochs"
    return round(run, 4), f"asked {asked:g}: one optimizer step is {step:.3g} {unit} of this data"


def train(config: TrainConfig) -> dict[str, Any]:
    """Train a cross-encoder per ``config``; returns metrics before/after, wall time and throughput. The settings are
    checked first (``TrainConfig.check``), before anything is imported or loaded."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train takes a TrainConfig, e.g. train(TrainConfig(data='train.jsonl', out='runs/model')), "
                        f"got {type(config).__name__}")
    config.check()
    import datasets
    import torch
    from transformers import set_seed

    from fastrank.data import convert, join_titles, read_groups
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.io import check_output_dir, check_replaceable
    from fastrank.losses import get_loss
    from fastrank.model import CrossEncoder, is_checkpoint_file
    from fastrank.training.args import CrossEncoderTrainingArguments
    from fastrank.training.trainer import CrossEncoderTrainer

    # a bad --out (or one holding an input: the base model, the data), loss, loss option or bf16 fails now, not after
    # loading or training
    embeds = config.uses_embedding_model
    check_output_dir(config.out, keep=[config.base, config.data, config.eval_data,
                                       config.first_stage_model if embeds else None])
    check_replaceable(config.out, is_checkpoint_file)  # what the final save would refuse, refused before training
    options, bf16 = _loss_options(config), config.resolved_bf16()
    out = Path(config.out)
    ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else out.with_name(out.name + ".checkpoints")
    _check_inputs_outside(ckpt_dir, [config.base, config.data, config.eval_data, config.first_stage_model],
                          removed=config.checkpoint_dir is None)
    record = _run_record(config, bf16)
    last = _check_resumable(ckpt_dir) if config.resume else None
    if last is not None:
        _check_same_run(ckpt_dir, record)
        _check_epochs_left(last, config.epochs)
    evaluator = RerankingEvaluator.from_file(config.eval_data, ks=(10,)) if config.eval_data else None  # read early
    set_seed(config.seed)
    groups = read_groups(config.data, config.data_split)
    _check_unit_labels(config, groups)
    num_labels = _num_labels(config, groups)  # a multi-class loss: labels checked to be class ids, before mining
    separator = _title_separator(groups, config.base)
    embedder = _embedding_model(config) if embeds else None  # loaded once for mining, answer negatives and prior
    mining_stats = _add_mined_negatives(groups, config, embedder) if config.mine_negatives else None
    if config.answer_negatives:
        mining_stats = {**(mining_stats or {}), **_add_answer_negatives(groups, config, embedder)}
    groups = _drop_lists_without_margin(config, groups)
    _check_negatives(config, groups)
    titled = join_titles(groups, separator) if separator else 0  # the dataset columns hold text
    model = CrossEncoder(config.base, max_length=config.max_length, num_labels=num_labels)
    if config.prompt is not None:  # the model scores, and is saved, with the prompt it trains with
        model.prompts = {**model.prompts, "query": config.prompt}
        model.default_prompt_name = "query"
    loss = get_loss(config.loss, model, **options)
    prior = _set_first_stage_prior(loss, config, embedder) if config.first_stage_weight else None
    make_scorer = _scorer_factory(prior, config.first_stage_weight)
    scorer = make_scorer(model)  # what the evaluator judges: the score the model is trained to produce
    fmt = loss.data_format
    kwargs: dict[str, Any] = {}
    if fmt == "lists":
        kwargs = {"max_documents": config.max_documents, "seed": config.seed}
    elif fmt == "ntuples":
        kwargs = {"num_negatives": config.num_negatives, "seed": config.seed}
    columns = convert(groups, fmt, **kwargs)
    train_dataset = datasets.Dataset.from_dict(columns)

    args = CrossEncoderTrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=config.epochs,
        learning_rate=config.lr,
        per_device_train_batch_size=config.batch_size,
        warmup_steps=float(config.warmup_ratio),  # below 1, transformers reads it as a fraction of the steps
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.scheduler,
        bf16=bf16,
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="epoch",
        save_total_limit=1,
        eval_strategy="epoch" if (evaluator and config.eval_each_epoch) else "no",
        logging_steps=max(1, math.ceil(len(train_dataset) / config.batch_size / 10)),
        disable_tqdm=not config.show_progress_bar,
        dataloader_drop_last=False,
        use_cpu=not torch.cuda.is_available(),
        prompts=model.default_prompt or None,  # trained as it scores
    )
    steps = math.ceil(len(train_dataset) / config.batch_size) * config.epochs
    if steps < MIN_USEFUL_STEPS:
        logger.warning("only %d optimizer step(s) (%d %s rows, batch %d, %s epochs), the first %d%% of them "
                       "warming the learning rate up from 0: the model will barely change; train on more data or for "
                       "more epochs",
                       math.ceil(steps), len(train_dataset), fmt, config.batch_size, config.epochs,
                       round(100 * config.warmup_ratio))
    result: dict[str, Any] = {"config": asdict(config), "bf16": bf16, "train_rows": len(train_dataset),
                              "train_pairs_per_epoch": _count_pairs(columns, fmt), "mining": mining_stats,
                              "titled_documents": titled,
                              **({"embedding_prompts": embedder.applied_prompts} if embedder is not None else {})}
    if evaluator is not None:
        result["eval_before"] = evaluator.evaluate(scorer).to_dict()
    each_epoch = _ScoredEvaluator(evaluator, make_scorer) if evaluator is not None and config.eval_each_epoch else None
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss, evaluator=each_epoch)
    if not config.show_progress_bar:  # without its bar transformers prints every log dict to stdout instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if last is not None:
        _drop_incomplete(ckpt_dir, last)
    else:
        _start_afresh(ckpt_dir, record)
    resumed_at = _resumed_step(last)
    start = time.perf_counter()
    try:
        output = trainer.train(resume_from_checkpoint=str(last) if last is not None else None)
    except BaseException:
        if config.checkpoint_dir is None and not any(ckpt_dir.glob("checkpoint-*")):
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # nothing to resume from: leave no empty folder behind
        raise
    seconds = time.perf_counter() - start
    result["train_seconds"] = round(seconds, 1)
    trained = output.global_step - resumed_at  # optimizer steps this call ran
    result["train_loss"] = output.training_loss if trained else None  # transformers' mean over those steps
    epochs, epochs_note = _epochs_run(trainer.state, config.epochs)
    result["epochs"] = epochs
    if epochs_note:
        result["epochs_note"] = epochs_note
    done = trained / max(output.global_step, 1)  # the share of the run trained in this call
    result["train_pairs_per_second"] = round(result["train_pairs_per_epoch"] * epochs * done / seconds, 1) \
        if trained else None
    if resumed_at:
        result["resumed_from_step"] = resumed_at
        result["train_loss_note"] = (f"train_loss and train_pairs_per_second cover steps {resumed_at + 1}-"
                                     f"{output.global_step}, those this resumed call trained" if trained else
                                     f"the checkpoint held all {resumed_at} steps: nothing was left to train")
    embedder_prompts = {"prompts": embedder.applied_prompts} if embeds and any(embedder.applied_prompts.values()) \
        else {}
    model.card_data = {  # written anew: facts of an earlier training run (a prior, titles) do not carry over
        "base_model": base_model_name(config.base),
        "train_data": f"{config.data} ({len(groups)} queries, {len(train_dataset)} {fmt} rows"
                      + (f", +{config.mine_negatives} mined negatives per query" if config.mine_negatives else "")
                      + (f", +{config.answer_negatives} answer negatives per query" if config.answer_negatives else "")
                      + ")",
        "loss": f"{type(loss).__name__} {config.loss_options or ''}".strip(),
        **({"titled_documents": {"count": titled, "separator": separator}} if titled else {}),
        **({"first_stage_prior": {"model": config.first_stage_model, "weight": config.first_stage_weight,
                                  "score": "logit + weight * first-stage score", **embedder_prompts}}
           if config.first_stage_weight else {}),
        "hyperparameters": {k: v for k, v in asdict(config).items()
                            if k in ("epochs", "lr", "batch_size", "max_length", "warmup_ratio", "weight_decay",
                                     "scheduler", "max_documents", "num_negatives", "mine_negatives",
                                     "answer_negatives", "seed")}
                           | {"epochs": f"{epochs:g} ({epochs_note})" if epochs_note else epochs, "bf16": bf16}
                           | ({"embedding_model": config.first_stage_model, **embedder_prompts} if embeds else {}),
        **({"ranking_score": "softmax probability of the last class (fastrank.reranker.relevance)"}
           if num_labels > 1 else {}),
    }
    if evaluator is not None:
        result["eval_after"] = evaluator.evaluate(scorer).to_dict()
        model.card_data["evaluation"] = {"data": config.eval_data, **result["eval_after"]["metrics"]}
    model.save(out)
    if config.checkpoint_dir is None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # only needed to resume an unfinished run
    result["output_dir"] = str(out)
    return result

