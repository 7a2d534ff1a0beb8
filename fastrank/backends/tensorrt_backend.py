"""TensorRT backend: runs a serialized engine from a ``fastrank export --format tensorrt`` artifact on one stream.

One execution context per optimization profile (each bound to its profile once); for a batch the tightest profile
covering (batch, sequence) is chosen, inputs are copied through pinned host buffers, shapes are set with
``set_input_shape`` and tensors bound by address (``set_tensor_address``), then ``execute_async_v3`` on the
backend's stream. Buffers are torch CUDA tensors, so no extra CUDA binding is needed. Needs a GPU, TensorRT and
CUDA torch: not run on this project's machines (see the README support matrix).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.backends.base import Backend
from fastrank.errors import FastrankError, ModelLoadError, require
from fastrank.export.profiles import Profile, pick_profile

logger = logging.getLogger(__name__)


def gpu_info() -> tuple[str | None, str | None]:
    """(compute capability like ``"9.0"``, TensorRT version) of this machine; None for what is missing."""
    cc = trt_version = None
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            cc = f"{major}.{minor}"
    except ImportError:
        pass
    try:
        import tensorrt

        trt_version = tensorrt.__version__
    except ImportError:
        pass
    return cc, trt_version


class TensorRTBackend(Backend):
    """Scores batches with a TensorRT engine built with ``profiles`` (see ``fastrank.export.profiles``)."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, input_names: Sequence[str], profiles: Sequence[Profile],
                 output_name: str = "logits") -> None:
        trt = require("tensorrt", "tensorrt", "the TensorRT backend")
        self.torch = require("torch", "train", "the TensorRT backend's CUDA buffers")
        if not self.torch.cuda.is_available():
            raise FastrankError("the TensorRT backend needs a CUDA GPU; none is visible")
        self.input_names, self.output_name = tuple(input_names), output_name
        self.profiles = list(profiles)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ModelLoadError(f"TensorRT could not load {engine_path} (built for another GPU or TensorRT?)")
        if self.engine.num_optimization_profiles != len(self.profiles):
            raise ModelLoadError(f"{engine_path} has {self.engine.num_optimization_profiles} optimization profiles; "
                                 f"the manifest lists {len(self.profiles)}")
        self.stream = self.torch.cuda.Stream()
        self.contexts = []
        for i in range(len(self.profiles)):
            context = self.engine.create_execution_context()
            context.set_optimization_profile_async(i, self.stream.cuda_stream)
            self.contexts.append(context)
        self.stream.synchronize()
        largest = max((p.max_batch * p.max_seq for p in self.profiles), default=0)
        self.pinned = {n: self.torch.empty(largest, dtype=self.torch.int64).pin_memory() for n in self.input_names}

    @classmethod
    def from_artifact(cls, path: Path, manifest: dict[str, Any] | None, **options: Any) -> TensorRTBackend:
        from fastrank.export.tensorrt import select_engine

        section = (manifest or {}).get("tensorrt")
        if not section:
            raise ModelLoadError(f"{path} has no TensorRT engines; export with `fastrank export --format tensorrt`")
        entry, reason = select_engine(section["engines"], *gpu_info())
        if entry is None:
            raise ModelLoadError(f"{path}: {reason}")
        profiles = [Profile(**p) for p in section["profiles"]]
        return cls(Path(path) / "tensorrt" / entry["file"], manifest["input_names"], profiles,
                   manifest.get("output_name", "logits"))

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        inputs = self._select_inputs(batch)
        rows, width = inputs[self.input_names[0]].shape
        index = pick_profile(self.profiles, rows, width)
        context = self.contexts[index]
        with torch.cuda.stream(self.stream):
            device_inputs = {}
            for name, array in inputs.items():
                host = self.pinned[name][: array.size].view(rows, width)
                host.copy_(torch.from_numpy(np.ascontiguousarray(array)))
                device_inputs[name] = host.to("cuda", non_blocking=True)
                context.set_input_shape(name, (rows, width))
                context.set_tensor_address(name, device_inputs[name].data_ptr())
            shape = tuple(context.get_tensor_shape(self.output_name))
            output = torch.empty(shape, dtype=torch.float32, device="cuda")
            context.set_tensor_address(self.output_name, output.data_ptr())
            if not context.execute_async_v3(self.stream.cuda_stream):
                raise FastrankError(f"TensorRT execution failed for a {rows}x{width} batch")
            result = output.float().cpu()
        self.stream.synchronize()
        return result.numpy().reshape(rows, -1).astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": "cuda", "profiles": len(self.profiles)}
