"""fastrank: train, export and serve cross-encoder rerankers.

Public names are resolved lazily so that ``import fastrank`` stays light: torch, transformers and
onnxruntime are imported only when the object that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "CrossEncoder": "fastrank.model",
    "load_dataset": "fastrank.data",
    "RerankingEvaluator": "fastrank.evaluation.evaluators",
    "CrossEncoderRerankingEvaluator": "fastrank.evaluation.evaluators",
    "EmbeddingModel": "fastrank.embedding",
    "mine_hard_negatives": "fastrank.mining",
    "add_answer_negatives": "fastrank.mining",
    "fuse_scores": "fastrank.fusion",
    "evaluate_rankings": "fastrank.evaluation.metrics",
    "CrossEncoderTrainer": "fastrank.training.trainer",
    "CrossEncoderTrainingArguments": "fastrank.training.args",
    "BatchSamplers": "fastrank.training.args",
    "MultiDatasetBatchSamplers": "fastrank.training.args",
    "train": "fastrank.training.recipe",
    "TrainConfig": "fastrank.training.recipe",
    "losses": "fastrank.losses",
    "FastrankError": "fastrank.errors",
    "MissingDependency": "fastrank.errors",
    "DataError": "fastrank.errors",
    "ModelLoadError": "fastrank.errors",
    "ParityError": "fastrank.errors",
    "LossConfigError": "fastrank.errors",
    "RankedDoc": "fastrank.types",
    "EvalResult": "fastrank.types",
    "Reranker": "fastrank.reranker",
    "rerank": "fastrank.reranker",
    "clear_rerank_cache": "fastrank.reranker",
    "rerank_run": "fastrank.run_rerank",
    "Client": "fastrank.client",
    "ServiceError": "fastrank.client",
    "UnknownBackendError": "fastrank.backends.base",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from fastrank.backends.base import UnknownBackendError
    from fastrank.client import Client, ServiceError
    from fastrank.data import load_dataset
    from fastrank.errors import DataError, FastrankError, MissingDependency, ModelLoadError, ParityError
    from fastrank.evaluation.evaluators import CrossEncoderRerankingEvaluator, RerankingEvaluator
    from fastrank.evaluation.metrics import evaluate_rankings
    from fastrank.model import CrossEncoder
    from fastrank.reranker import Reranker, clear_rerank_cache, rerank
    from fastrank.run_rerank import rerank_run
    from fastrank.training.args import BatchSamplers, CrossEncoderTrainingArguments, MultiDatasetBatchSamplers
    from fastrank.training.recipe import TrainConfig, train
    from fastrank.training.trainer import CrossEncoderTrainer
    from fastrank.types import EvalResult, RankedDoc


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastrank' has no attribute {name!r}")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:  # torch for CrossEncoder in an install without [train]: name the extra
        from fastrank.errors import missing_dependency

        missing = missing_dependency(exc, f"fastrank.{name}")
        if missing is None:
            raise
        raise missing from exc
    value = mod if module.endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
