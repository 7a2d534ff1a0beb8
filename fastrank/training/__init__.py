"""Training: arguments, the data collator, the Trainer subclass and the default recipe."""

from fastrank.training.args import CrossEncoderTrainingArguments
from fastrank.training.collator import CrossEncoderCollator
from fastrank.training.trainer import CrossEncoderTrainer

__all__ = ["CrossEncoderCollator", "CrossEncoderTrainer", "CrossEncoderTrainingArguments"]
