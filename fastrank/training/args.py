"""Training arguments: transformers' TrainingArguments with defaults that suit cross-encoder training."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class CrossEncoderTrainingArguments(TrainingArguments):
    """``transformers.TrainingArguments`` plus ``group_by_pair_length``.

    Defaults differ from transformers where cross-encoders need it: the dataset's text columns are kept
    (``remove_unused_columns=False``, the loss tokenizes), evaluation reports the loss only, and batches are
    grouped by text length so less time is spent on padding.
    """

    group_by_pair_length: bool = field(
        default=True, metadata={"help": "Batch rows of similar text length together (less padding, faster)."}
    )
    remove_unused_columns: bool = field(default=False)
    prediction_loss_only: bool = field(default=True)
    report_to: str | list[str] | None = field(default="none")

    def __post_init__(self) -> None:
        import torch

        if not self.use_cpu and not torch.cuda.is_available() and self.bf16:
            self.use_cpu = True  # transformers refuses bf16 without a GPU unless told to train on the CPU
        super().__post_init__()
