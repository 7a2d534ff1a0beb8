"""Training: arguments, the data collator, the Trainer subclass and the default recipe.

Names resolve lazily (as in ``fastrank``): ``fastrank.training.recipe.TrainConfig`` and its defaults are read by the
CLI's help without importing transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "CrossEncoderTrainingArguments": "fastrank.training.args",
    "CrossEncoderCollator": "fastrank.training.collator",
    "CrossEncoderTrainer": "fastrank.training.trainer",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from fastrank.training.args import CrossEncoderTrainingArguments
    from fastrank.training.collator import CrossEncoderCollator
    from fastrank.training.trainer import CrossEncoderTrainer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastrank.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
