"""Backends score padded batches (``Backend.logits``); the registry maps names to them.

Importing this package imports neither torch nor onnxruntime; ``get_backend(name)`` imports the one asked for.
"""

from fastrank.backends.base import Backend, UnknownBackendError, get_backend, known_backends, register_backend

__all__ = ["Backend", "UnknownBackendError", "get_backend", "known_backends", "register_backend"]
