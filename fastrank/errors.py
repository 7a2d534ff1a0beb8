"""Typed errors: every failure fastrank raises on purpose derives from FastrankError."""

from __future__ import annotations


class FastrankError(Exception):
    """Base class for errors raised by fastrank on purpose (bad input, missing files, failed checks)."""


def install_hint(extra: str) -> str:
    """How to add an extra: from the fastrank source checkout (PyPI's "fastrank" is another project)."""
    return f'pip install -e ".[{extra}]" in the fastrank checkout'


class MissingDependency(FastrankError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: {install_hint(extra)}"
        )
        self.package = package
        self.extra = extra


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
