"""The backend contract and the registry of backends by name.

A backend turns one padded batch (the arrays ``fastrank.batching.collate`` returns) into float32 logits of shape
``(n, num_labels)``. Everything else — tokenization, length-sorted batching, windows over long documents,
activation, ordering, top-k — lives above it in ``fastrank.reranker``, once for every backend.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fastrank.errors import FastrankError

# name -> "module:Class"; imported only when the backend is asked for, so listing names imports nothing heavy.
_REGISTRY: dict[str, str] = {
    "torch": "fastrank.backends.torch_backend:TorchBackend",
    "onnx": "fastrank.backends.onnx_backend:OnnxBackend",
    "tensorrt": "fastrank.backends.tensorrt_backend:TensorRTBackend",
    "torch-cuda": "fastrank.backends.torch_cuda_backend:TorchCudaBackend",
}


class UnknownBackendError(FastrankError, ValueError):
    """A backend name that is not registered; the message lists the registered ones."""


class Backend(ABC):
    """Scores padded batches. Subclasses set ``name``, ``input_names`` and ``num_labels`` and implement ``logits``.

    ``input_names`` are the batch arrays the model reads (a subset of ``input_ids``, ``attention_mask``,
    ``token_type_ids``); the reranker passes exactly the arrays ``collate`` builds, right-padded int64.
    """

    name: ClassVar[str] = ""
    input_names: tuple[str, ...] = ()
    num_labels: int = 1
    # Batches are padded to a multiple of this many tokens. 8 suits GPUs (aligned shapes, few distinct ones); a CPU
    # backend sets 1, since on CPU the rounding is only wasted work (+10.5% tokens on WikiQA's short pairs).
    pad_multiple: int = 8
    # The largest batch the backend can run (a TensorRT engine's profiles, CUDA-graph buckets); None = no limit.
    max_batch: int | None = None

    @abstractmethod
    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """float32 array (n, num_labels) of raw logits for one padded batch."""

    @classmethod
    def from_artifact(cls, path: Path, manifest: dict[str, Any] | None, **options: Any) -> Backend:
        """Open the model in ``path`` (an artifact directory with its ``manifest``, or a plain checkpoint when the
        manifest is None) with backend ``options`` such as ``num_threads``."""
        raise NotImplementedError(f"the {cls.name} backend cannot open model directories")

    def scorers(self) -> list[Callable[[dict[str, np.ndarray]], np.ndarray]]:
        """Functions like ``logits`` that may run at the same time, one thread each (``run_batches`` spreads the
        batches over them). One by default; the onnx backend gives one per session when it has several."""
        return [self.logits]

    def warmup(self) -> int:
        """Prepare every shape the backend will run (CUDA graphs, TensorRT profiles) before traffic arrives, so no
        request pays for it; returns how many shapes were prepared (0 for backends with nothing to prepare)."""
        return 0

    def describe(self) -> dict[str, Any]:
        """What runs, in words a benchmark or log can record (name, precision, providers...)."""
        return {"backend": self.name}

    def _select_inputs(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [k for k in self.input_names if k not in batch]
        if missing:
            raise FastrankError(
                f"{self.name} backend needs inputs {list(self.input_names)}; the batch lacks {missing} "
                f"(it has {sorted(batch)})"
            )
        return {k: batch[k] for k in self.input_names}


def known_backends() -> list[str]:
    return sorted(_REGISTRY)


def register_backend(name: str, target: str | type[Backend]) -> None:
    """Register a backend class (or a ``"module:Class"`` path, imported on first use) under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a backend name is a non-empty string, got {name!r}")
    _REGISTRY[name] = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def get_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name``; an unknown name lists the known ones.

    A backend whose optional dependency is missing raises ``MissingDependency`` (naming the extra to install)
    when it is constructed, not here, so that asking for the class never hides a real import bug.
    """
    target = _REGISTRY.get(name)
    if target is None:
        raise UnknownBackendError(f"unknown backend {name!r}; known backends: {', '.join(known_backends())}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
