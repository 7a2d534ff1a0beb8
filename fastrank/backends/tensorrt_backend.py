"""TensorRT backend: runs a serialized engine from a ``fastrank export --format tensorrt`` artifact on one stream.

One execution context per optimization profile (each bound to its profile once); for a batch the tightest profile
covering (batch, sequence) is chosen, inputs are copied through pinned host buffers into device buffers allocated
once at the largest profile shape, shapes are set with ``set_input_shape``, tensors bound by address
(``set_tensor_address``), then ``execute_async_v3`` runs on the backend's stream. Tensor dtypes are read from the
engine (a parser may keep int64 token ids or narrow them to int32). Buffers are torch CUDA tensors (``CudaIO``), so
no extra CUDA binding is needed. A real engine needs a GPU, TensorRT and CUDA torch: not run on this project's
machines (see the README support matrix); the tests drive this class with a stand-in engine on host memory.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.backends.base import Backend
from fastrank.errors import FastrankError, ModelLoadError, require
from fastrank.export.profiles import Profile, batch_limit, pick_profile

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


class CudaIO:
    """Where the engine's buffers live and how copies are ordered: pinned host staging buffers, device buffers and
    one CUDA stream (its handle is what TensorRT enqueues on)."""

    device = "cuda"

    def __init__(self, torch: Any) -> None:
        if not torch.cuda.is_available():
            raise FastrankError("the TensorRT backend needs a CUDA GPU; none is visible")
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.handle = self.stream.cuda_stream

    def host(self, size: int, dtype: Any) -> Any:
        return self.torch.empty(size, dtype=dtype).pin_memory()

    def buffer(self, size: int, dtype: Any) -> Any:
        return self.torch.empty(size, dtype=dtype, device=self.device)

    @contextlib.contextmanager
    def ordered(self) -> Iterator[None]:
        with self.torch.cuda.stream(self.stream):
            yield

    def synchronize(self) -> None:
        self.stream.synchronize()


class TensorRTBackend(Backend):
    """Scores batches with a TensorRT engine built with ``profiles`` (see ``fastrank.export.profiles``).

    ``trt`` and ``io`` default to the installed ``tensorrt`` module and ``CudaIO``; they are parameters so the
    decisions here (profile per batch, shapes, dtypes, buffer reuse) can be tested without a GPU.
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, input_names: Sequence[str], profiles: Sequence[Profile],
                 output_name: str = "logits", *, trt: Any = None, io: Any = None) -> None:
        trt = trt or require("tensorrt", "tensorrt", "the TensorRT backend")
        self.torch = torch = require("torch", "train", "the TensorRT backend's CUDA buffers")
        self.io = io or CudaIO(torch)
        self.engine_path = Path(engine_path)
        self.input_names, self.output_name = tuple(input_names), output_name
        self.profiles = list(profiles)
        if not self.profiles:
            raise ModelLoadError(f"{engine_path}: the manifest lists no optimization profiles for the engine")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ModelLoadError(f"TensorRT could not load {engine_path} (built for another GPU or TensorRT?)")
        if self.engine.num_optimization_profiles != len(self.profiles):
            raise ModelLoadError(f"{engine_path} has {self.engine.num_optimization_profiles} optimization profiles; "
                                 f"the manifest lists {len(self.profiles)}")
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))
                       for n in (*self.input_names, output_name)}
        self.num_labels = int(self.engine.get_tensor_shape(output_name)[-1])
        # one context, switched between profiles as batches need: a context's default (static) memory is the
        # largest any profile needs, so a context per profile would hold that once per profile. Batches come
        # length-sorted, so a call switches at most a few times.
        self.context = self.engine.create_execution_context()
        self._profile = 0
        self.max_batch = batch_limit(self.profiles)
        largest = max(p.max_batch * p.max_seq for p in self.profiles)
        as_torch = {n: torch.from_numpy(np.empty(0, dtype=d)).dtype for n, d in self.dtypes.items()}
        self.staging = {n: self.io.host(largest, as_torch[n]) for n in self.input_names}
        self.buffers = {n: self.io.buffer(largest, as_torch[n]) for n in self.input_names}
        self.output = self.io.buffer(max(p.max_batch for p in self.profiles) * self.num_labels, as_torch[output_name])
        self._lock = threading.Lock()

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
        inputs = self._select_inputs(batch)
        rows, width = inputs[self.input_names[0]].shape
        index = pick_profile(self.profiles, rows, width)
        context = self.context
        size = rows * width
        with self._lock, self.io.ordered():  # one batch at a time: the buffers and the context are shared
            if index != self._profile:  # in stream order, before this batch's shapes are set
                if not context.set_optimization_profile_async(index, self.io.handle):
                    raise FastrankError(f"TensorRT could not switch to optimization profile {index}")
                self._profile = index
            for name, array in inputs.items():
                staged = np.ascontiguousarray(array, dtype=self.dtypes[name]).reshape(-1)
                self.staging[name][:size].copy_(self.torch.from_numpy(staged))
                self.buffers[name][:size].copy_(self.staging[name][:size], non_blocking=True)
                if not context.set_input_shape(name, (rows, width)):
                    raise FastrankError(f"TensorRT rejected shape {rows}x{width} for {name!r} "
                                        f"(profile {self.profiles[index]})")
                context.set_tensor_address(name, self.buffers[name].data_ptr())
            shape = tuple(context.get_tensor_shape(self.output_name))
            if shape != (rows, self.num_labels):
                raise FastrankError(f"the engine's {self.output_name!r} has shape {shape} for a {rows}x{width} "
                                    f"batch; expected ({rows}, {self.num_labels})")
            context.set_tensor_address(self.output_name, self.output.data_ptr())
            if not context.execute_async_v3(self.io.handle):
                raise FastrankError(f"TensorRT execution failed for a {rows}x{width} batch")
            result = self.output[: rows * self.num_labels].float().cpu()
            self.io.synchronize()
        return result.numpy().reshape(rows, self.num_labels)

    def warmup(self) -> int:
        """Run each profile once at its ``opt`` shape (TensorRT sets up a profile's kernels and memory on its first
        execution); returns the number of profiles warmed."""
        for profile in self.profiles:
            ids = np.zeros((profile.opt_batch, profile.opt_seq), dtype=np.int64)
            batch = {n: ids.copy() for n in self.input_names}
            if "attention_mask" in batch:
                batch["attention_mask"][:, 0] = 1
            self.logits(batch)
        return len(self.profiles)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.io.device, "engine": self.engine_path.name,
                "profiles": len(self.profiles),
                "input_dtypes": {n: str(self.dtypes[n]) for n in self.input_names}}
