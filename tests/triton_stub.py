"""Load a generated Triton Python-backend tokenizer (``<repo>/fastrank_tokenizer/1/model.py``) outside Triton, with
a stand-in ``triton_python_backend_utils`` holding the four names it uses."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any


class Tensor:
    """``pb_utils.Tensor``: a named numpy array."""

    def __init__(self, name: str, array: Any) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> Any:
        return self.array


class TritonError:
    """``pb_utils.TritonError``: a request's error, returned in place of its outputs."""

    def __init__(self, message: str) -> None:
        self.message = message


def load_tokenizer_model(repo: Path, monkeypatch: Any) -> Any:
    """The repository's initialized ``TritonPythonModel``; ``execute([{"QUERY": Tensor, "DOCUMENT": Tensor}])``
    returns one list of output ``Tensor``s per request (a ``TritonError`` for a request that failed)."""
    stub = types.SimpleNamespace(Tensor=Tensor, TritonError=TritonError,
                                 InferenceResponse=lambda output_tensors, error=None: error or output_tensors,
                                 get_input_tensor_by_name=lambda request, name: request[name])
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stub)
    path = repo / "fastrank_tokenizer" / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"triton_tok_{id(repo)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({})
    return model
