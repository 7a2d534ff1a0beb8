"""Training arguments: transformers' TrainingArguments with defaults that suit cross-encoder training."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from transformers import TrainingArguments

from fastrank.training.recipe import check_warmup_ratio

BATCH_SAMPLERS = ("batch_sampler", "no_duplicates", "no_duplicates_hashed")
MULTI_DATASET_BATCH_SAMPLERS = ("proportional", "round_robin")


class BatchSamplers(str, Enum):
    """sentence-transformers' batch sampler names, so ``batch_sampler=BatchSamplers.NO_DUPLICATES`` ports with its
    import changed. ``GROUP_BY_LABEL`` (for triplet-style embedding losses) is named so it is refused with a reason."""

    BATCH_SAMPLER = "batch_sampler"
    NO_DUPLICATES = "no_duplicates"
    NO_DUPLICATES_HASHED = "no_duplicates_hashed"
    GROUP_BY_LABEL = "group_by_label"


class MultiDatasetBatchSamplers(str, Enum):
    """sentence-transformers' multi-dataset sampler names (accepted; fastrank trains on one dataset)."""

    ROUND_ROBIN = "round_robin"
    PROPORTIONAL = "proportional"


def _option_value(value: Any) -> Any:
    """The string behind an enum member (``BatchSamplers.NO_DUPLICATES`` -> ``"no_duplicates"``)."""
    return getattr(value, "value", value)


def _training_prompt(prompts: Any) -> str | None:
    """sentence-transformers' ``prompts`` as the one prompt fastrank trains with (None: none). A dict maps dataset
    names to prompts there (a single dataset gets none); fastrank trains on one dataset, so a dict is refused."""
    if prompts is None or prompts == "" or prompts == {}:
        return None
    if isinstance(prompts, dict):
        raise ValueError(f"prompts maps datasets {sorted(prompts)} to prompts, but fastrank trains on one dataset "
                         "(sentence-transformers would apply none to it): give its prompt as a string, e.g. "
                         "prompts='query: '")
    if not isinstance(prompts, str):
        raise TypeError(f"prompts must be a string put before every query (e.g. 'query: ') or None, got {prompts!r}")
    return prompts


@dataclass
class CrossEncoderTrainingArguments(TrainingArguments):
    """``transformers.TrainingArguments`` plus ``group_by_pair_length`` and sentence-transformers' argument names.

    Defaults differ from transformers where cross-encoders need it: the dataset's text columns are kept
    (``remove_unused_columns=False``, the loss tokenizes), evaluation reports the loss only, and batches are
    grouped by text length so less time is spent on padding. Because of ``group_by_pair_length=True`` (the
    default) the batches differ from sentence-transformers' (which shuffles without grouping); pass
    ``group_by_pair_length=False`` to get plain shuffled batches.

    sentence-transformers compatibility:

    - ``warmup_ratio``: a fraction of the optimizer steps in [0, 1), stored as ``warmup_steps`` (transformers 5
      reads a ``warmup_steps`` below 1 as that fraction), as sentence-transformers does. Set one of the two.
    - ``batch_sampler``: ``"batch_sampler"`` (default) or ``"no_duplicates"`` (``BatchSamplers.NO_DUPLICATES``;
      ``"no_duplicates_hashed"`` is taken as the same): no batch has a text twice, across its text columns,
      so in-batch negatives (MultipleNegativesRankingLoss) are not copies of the positive; only a text in more
      rows than an epoch has batches must repeat. Batches stay full (sentence-transformers' end an epoch short).
      It shuffles without length grouping.
    - ``multi_dataset_batch_sampler``: accepted for compatibility; only matters for multi-dataset training,
      which fastrank does not support.
    - ``prompts``: a string put before every query while training and evaluating the loss, as there (the model
      keeps scoring with its own prompts: give it the same as its default prompt to score as it was trained). A
      per-dataset dict is refused: fastrank trains on one dataset (sentence-transformers applies none to it).
    - ``router_mapping``, ``learning_rate_mapping``: accepted only empty (unsupported).
    """

    # Unions name None second: transformers' HfArgumentParser (``fastrank train`` scripts, ``--help``) reads the
    # type of a ``str | None | X`` field as str and fails on ``str | X | None``.
    group_by_pair_length: bool = field(
        default=True, metadata={"help": "Batch rows of similar text length together (less padding, faster)."}
    )
    remove_unused_columns: bool = field(default=False)
    prediction_loss_only: bool = field(default=True)
    report_to: str | None | list[str] = field(default="none")
    warmup_ratio: float | None = field(
        default=None, metadata={"help": "Warmup as a fraction of the optimizer steps in [0, 1) (sets warmup_steps)."}
    )
    batch_sampler: str = field(
        default="batch_sampler", metadata={"help": "'batch_sampler' (default) or 'no_duplicates'."}
    )
    multi_dataset_batch_sampler: str = field(
        default="proportional", metadata={"help": "Accepted for sentence-transformers compatibility; unused."}
    )
    prompts: str | None | dict[str, str] = field(
        default=None, metadata={"help": "A prompt put before every query while training (e.g. 'query: ')."}
    )
    router_mapping: str | None | dict[str, str] = field(default=None, metadata={"help": "Unsupported."})
    learning_rate_mapping: str | None | dict[str, float] = field(default=None, metadata={"help": "Unsupported."})

    def __post_init__(self) -> None:
        import torch

        self._check_sentence_transformers_options()
        if not self.use_cpu and not torch.cuda.is_available() and self.bf16:
            self.use_cpu = True  # transformers refuses bf16 without a GPU unless told to train on the CPU
        super().__post_init__()

    def _check_sentence_transformers_options(self) -> None:
        """Map or refuse the arguments sentence-transformers' CrossEncoderTrainingArguments adds."""
        if self.warmup_ratio is not None:
            ratio = self.warmup_ratio
            check_warmup_ratio(ratio)
            if self.warmup_steps != 0:
                raise ValueError(f"set either warmup_ratio ({ratio}) or warmup_steps ({self.warmup_steps}), not both; "
                                 "warmup_steps below 1 is itself read as a fraction of the optimizer steps")
            # as sentence-transformers on transformers 5: a float warmup_steps below 1 is a ratio of the steps
            self.warmup_steps = float(ratio)
            self.warmup_ratio = None
        sampler = _option_value(self.batch_sampler)
        if sampler not in BATCH_SAMPLERS:
            raise ValueError(f"batch_sampler={self.batch_sampler!r} is not supported; fastrank supports "
                             "'batch_sampler' (BatchSamplers.BATCH_SAMPLER, the default) and 'no_duplicates' "
                             "(BatchSamplers.NO_DUPLICATES); for length-grouped batches use group_by_pair_length=True")
        self.batch_sampler = "no_duplicates" if sampler == "no_duplicates_hashed" else sampler
        multi = _option_value(self.multi_dataset_batch_sampler)
        if multi not in MULTI_DATASET_BATCH_SAMPLERS:
            raise ValueError(f"multi_dataset_batch_sampler={self.multi_dataset_batch_sampler!r} is not supported; "
                             f"fastrank trains on one dataset (accepted: {', '.join(MULTI_DATASET_BATCH_SAMPLERS)})")
        self.multi_dataset_batch_sampler = multi
        self.prompts = _training_prompt(self.prompts)
        unsupported = {
            "router_mapping": "fastrank cross-encoders have no Router module",
            "learning_rate_mapping": "build the optimizer's parameter groups yourself and pass "
                                     "CrossEncoderTrainer(optimizers=(optimizer, None))",
        }
        for name, advice in unsupported.items():
            if getattr(self, name):
                raise ValueError(f"{name} is not supported by fastrank's CrossEncoderTrainingArguments: {advice}")
            setattr(self, name, None)
