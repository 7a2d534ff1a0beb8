"""A stand-in for the ``tensorrt`` module, so the TensorRT builder and runtime code runs on a CPU.

It keeps the parts of the TensorRT 10/11 Python API fastrank calls and checks how they are called:

- The builder parses the ONNX file into layers (one per node, with the node's output dtypes), records creation
  flags, builder flags, per-layer precision, optimization profiles and the timing cache. Its "engine" is a JSON
  header plus the ONNX bytes. Ops outside the standard ONNX domain (onnxruntime's fused contrib ops) fail the
  parse, as in TensorRT.
- TensorRT 11 has no weak-typing API. ``BuilderFlag.FP16``, ``OBEY_PRECISION_CONSTRAINTS`` and the others are
  absent, as are ``ILayer.precision`` and ``ILayer.set_output_type`` (tensorrt-cu12-bindings 11.4.0.106); on
  TensorRT 10 they exist, and setting them on a ``STRONGLY_TYPED`` network raises.
- ``NetworkDefinitionCreationFlag`` has TensorRT's values: ``EXPLICIT_BATCH`` = 0 (10 only; deprecated and
  ignored), ``STRONGLY_TYPED`` = 1 (deprecated and ignored in 11, where every network is strongly typed).
- Precision is emulated by one rule: a build that computes normalization, softmax or the classifier in 16 bits
  adds a 0.1 error to every logit. On TensorRT 10 these are layers left unpinned under the FP16/BF16 flag; on
  TensorRT 11, normalization weights stored in fp16 in the ONNX. Otherwise the ONNX runs unchanged on
  onnxruntime's CPU provider. So the precision ladder passes or fails as it would with a real engine.
- A build that asks fp32 of a layer with integer or shape-tensor outputs fails, as TensorRT refuses it.
- The runtime reads inputs from, and writes logits to, the raw addresses bound with ``set_tensor_address``
  (host memory here), with the engine's input dtype (int32 by default, as a parser may narrow token ids). It
  rejects shapes outside the context's profile, as TensorRT does.
"""

from __future__ import annotations

import ctypes
import json
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

NORM_OPS = ("LayerNormalization", "SkipLayerNormalization")
# ONNX op -> the TensorRT layer type the parser makes of it (others become ELEMENTWISE here; only these matter).
LAYER_TYPES = {"LayerNormalization": "NORMALIZATION", "SkipLayerNormalization": "NORMALIZATION",
               "Softmax": "SOFTMAX", "MatMul": "MATRIX_MULTIPLY", "Gemm": "MATRIX_MULTIPLY"}
HEADER_END = b"\n--onnx--\n"
NOISE = 0.1
OTHER_DEVICE = b"other-device:"  # a timing cache starting so was made on another GPU: set_timing_cache refuses it
FLOAT_DTYPES = ("float32", "float16", "bfloat16")


class _Enum:
    def __init__(self, **members: int) -> None:
        self.__dict__.update(members)


class _Tensor:
    def __init__(self, dtype: str, is_shape_tensor: bool) -> None:
        self.dtype, self.is_shape_tensor = dtype, is_shape_tensor


class _Layer:
    """A TensorRT 11 ``ILayer``: no ``precision`` or ``set_output_type`` (weak typing was removed)."""

    def __init__(self, name: str, op_type: str, strongly_typed: bool, outputs: list[_Tensor]) -> None:
        self.name, self.type = name, f"LayerType.{LAYER_TYPES.get(op_type, 'ELEMENTWISE')}"
        self._strong, self._precision, self.output_types, self.outputs = strongly_typed, None, {}, outputs
        self.num_outputs = len(outputs)

    def get_output(self, index: int) -> _Tensor:
        return self.outputs[index]

    @property
    def int_pinned_float(self) -> bool:
        """fp32 asked of a layer with integer or shape outputs, which TensorRT refuses ("cannot use precision
        Float with weights of type Int32", "A shape layer can only run in INT32 precision")."""
        asked = self._precision == "float32" or "float32" in self.output_types.values()
        return asked and any(o.dtype not in FLOAT_DTYPES or o.is_shape_tensor for o in self.outputs)

    @property
    def pinned(self) -> bool:
        """Computed and written in fp32: both the layer's precision and its output's type were set."""
        return self._precision == "float32" and self.output_types.get(0) == "float32"


class _WeakLayer(_Layer):
    """A TensorRT 10 ``ILayer``, with the weak-typing ``precision`` and ``set_output_type``."""

    @property
    def precision(self) -> Any:
        return self._precision

    @precision.setter
    def precision(self, value: Any) -> None:
        if self._strong:
            raise RuntimeError("cannot set layer precision in a strongly typed network")
        self._precision = value

    def set_output_type(self, index: int, dtype: Any) -> None:
        if self._strong:
            raise RuntimeError("cannot set output types in a strongly typed network")
        self.output_types[index] = dtype


class _Network:
    def __init__(self, flags: int, strongly_typed: bool, weak_api: bool) -> None:
        self.flags, self.strongly_typed, self.layers, self.onnx_path = flags, strongly_typed, [], None
        self.layer_class = _WeakLayer if weak_api else _Layer

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, i: int) -> _Layer:
        return self.layers[i]


class _Parser:
    def __init__(self, network: _Network, logger: Any) -> None:
        self.network, self.num_errors = network, 0

    def parse_from_file(self, path: str) -> bool:
        import onnx

        model = onnx.load(path)
        self.errors = [f"UNSUPPORTED_NODE: no importer for {n.domain}::{n.op_type} ({n.name})"
                       for n in model.graph.node if n.domain not in ("", "ai.onnx")]
        self.num_errors = len(self.errors)
        if self.errors:
            return False
        self.network.onnx_path = path
        types = _output_dtypes(model)
        make = self.network.layer_class
        self.network.layers = []
        for i, n in enumerate(model.graph.node):
            outputs = [_Tensor(types.get(o, "float32"), n.op_type == "Shape") for o in n.output]
            name = n.name or f"node{i}"
            if n.op_type == "Gemm":  # one node, two layers: the second named as onnx-tensorrt names it (name_N)
                self.network.layers.append(make(name, "MatMul", self.network.strongly_typed, outputs))
                name, n_op = f"{name}_{len(self.network.layers)}", "Add"
            else:
                n_op = n.op_type
            self.network.layers.append(make(name, n_op, self.network.strongly_typed, outputs))
        self.network.fp16_norm_weights = _fp16_norm_weights(model)
        return True

    def get_error(self, i: int) -> str:
        return self.errors[i]


def _output_dtypes(model: Any) -> dict[str, str]:
    """Each tensor's element type, from ONNX shape inference, in the stand-in's names for TensorRT dtypes."""
    import onnx

    names = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
             onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64",
             onnx.TensorProto.BOOL: "bool"}
    graph = onnx.shape_inference.infer_shapes(model).graph
    return {v.name: names.get(v.type.tensor_type.elem_type, "int64")
            for v in [*graph.value_info, *graph.output, *graph.input]}


def _fp16_norm_weights(model: Any) -> bool:
    import onnx

    fp16 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    return any(x in fp16 for n in model.graph.node if n.op_type in NORM_OPS for x in n.input)


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


class _Cache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data


class _Config:
    def __init__(self) -> None:
        self.flags: set[str] = set()
        self.profiles: list[_Profile] = []
        self.cache: _Cache | None = None
        self.workspace = None

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self.workspace = size

    def set_flag(self, flag: str) -> None:
        self.flags.add(flag)

    def create_timing_cache(self, data: bytes) -> _Cache:
        return _Cache(bytes(data))

    def set_timing_cache(self, cache: _Cache, ignore_mismatch: bool) -> bool:
        if cache.data.startswith(OTHER_DEVICE) and not ignore_mismatch:
            return False  # as TensorRT: a cache from another device is refused unless mismatches are ignored
        self.cache = cache
        return True

    def get_timing_cache(self) -> _Cache:
        return self.cache

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine, self.profile, self.shapes, self.addresses, self.runs = engine, 0, {}, {}, []
        self.switches: list[int] = []

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        if not 0 <= index < len(self.engine.profiles):
            return False
        self.profile, self.shapes = index, {}  # as TensorRT: shapes are set again for the new profile
        self.switches.append(index)
        return True

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        lo, _, hi = self.engine.profiles[self.profile][name]
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        rows = next(iter(self.shapes.values()))[0]
        return (rows, 1)

    def execute_async_v3(self, stream: int) -> bool:
        time.sleep(self.engine.delay)
        feed = {}
        for name in self.engine.inputs:
            shape, dtype = self.shapes[name], self.engine.input_dtype
            raw = (ctypes.c_char * (int(np.prod(shape)) * dtype.itemsize)).from_address(self.addresses[name])
            feed[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.int64)
        logits = self.engine.session.run(["logits"], feed)[0].astype(np.float32)
        if self.engine.noisy:
            logits = logits + NOISE * np.cos(np.arange(logits.size, dtype=np.float32)).reshape(logits.shape)
        out = np.ascontiguousarray(logits)
        ctypes.memmove(self.addresses["logits"], out.ctypes.data, out.nbytes)
        self.runs.append((self.profile, self.shapes[self.engine.inputs[0]]))
        return True


class _Engine:
    def __init__(self, header: dict[str, Any], onnx_bytes: bytes, input_dtype: np.dtype, delay: float) -> None:
        import onnxruntime as ort

        self.profiles, self.noisy = header["profiles"], header["noisy"]
        self.inputs, self.input_dtype, self.delay = header["inputs"], input_dtype, delay
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.num_optimization_profiles = len(self.profiles)
        self.contexts: list[_Context] = []

    def get_tensor_dtype(self, name: str) -> str:
        return "INT32" if name in self.inputs and self.input_dtype == np.int32 else (
            "INT64" if name in self.inputs else "FLOAT")

    def get_tensor_shape(self, name: str) -> tuple:
        return (-1, -1) if name in self.inputs else (-1, 1)

    def create_execution_context(self) -> _Context:
        self.contexts.append(_Context(self))
        return self.contexts[-1]


def make_tensorrt(version: str = "10.5.0", input_dtype: Any = np.int32, delay: float = 0.0) -> types.ModuleType:
    """A ``tensorrt`` stand-in of ``version`` (10.x: weak typing available; 11.x: strongly typed only). ``delay``:
    seconds an execution waits before reading its inputs, as a GPU still busy with earlier work would."""
    strong_only = int(version.split(".")[0]) >= 11
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.float32, trt.float16, trt.bfloat16, trt.int32, trt.int64 = "float32", "float16", "bfloat16", "int32", "int64"
    trt.built: list[dict[str, Any]] = []  # what each build saw, for assertions
    trt.engines: list[_Engine] = []
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None})
    trt.MemoryPoolType = _Enum(WORKSPACE=0)
    flags = {"STRONGLY_TYPED": 1} if strong_only else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    trt.NetworkDefinitionCreationFlag = _Enum(**flags)
    trt.BuilderFlag = _Enum(TF32=6) if strong_only else _Enum(
        FP16="FP16", BF16="BF16", OBEY_PRECISION_CONSTRAINTS="OBEY_PRECISION_CONSTRAINTS",
        PREFER_PRECISION_CONSTRAINTS="PREFER_PRECISION_CONSTRAINTS", TF32=6)
    dtypes = {"INT32": np.int32, "INT64": np.int64, "FLOAT": np.float32}
    trt.nptype = lambda name: dtypes[name]

    class Builder:
        def __init__(self, logger: Any) -> None:
            pass

        def create_network(self, flags: int) -> _Network:
            strong = strong_only or bool(flags & (1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            return _Network(flags, strong, weak_api=not strong_only)

        def create_builder_config(self) -> _Config:
            return _Config()

        def create_optimization_profile(self) -> _Profile:
            return _Profile()

        def build_serialized_network(self, network: _Network, config: _Config) -> bytes | None:
            refused = [layer.name for layer in network.layers if layer.int_pinned_float]
            if refused:
                trt.built.append({"refused": refused})
                return None  # TensorRT logs the error and builds nothing
            reduced = config.flags & {"FP16", "BF16"}
            unpinned = [layer for layer in network.layers if _is_sensitive(layer) and not layer.pinned]
            noisy = bool(network.fp16_norm_weights) if network.strongly_typed else bool(reduced and unpinned)
            order = ["input_ids", "attention_mask", "token_type_ids"]
            header = {"version": version, "inputs": sorted({n for p in config.profiles for n in p.shapes},
                                                           key=lambda n: (order + [n]).index(n)),
                      "profiles": [p.shapes for p in config.profiles], "noisy": noisy}
            trt.built.append({"network_flags": network.flags, "builder_flags": set(config.flags), "noisy": noisy,
                              "layers": [layer.name for layer in network.layers],
                              "pinned": [layer.name for layer in network.layers if layer.pinned],
                              "profiles": [p.shapes for p in config.profiles], "workspace": config.workspace,
                              "cache_in": config.cache.data, "onnx": network.onnx_path})
            config.cache = _Cache(config.cache.data + b"t")  # the build adds timings to the cache
            return json.dumps(header).encode() + HEADER_END + Path(network.onnx_path).read_bytes()

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> _Engine | None:
            head, _, onnx_bytes = bytes(data).partition(HEADER_END)
            header = json.loads(head)
            if header["version"] != version:
                return None  # an engine from another TensorRT does not load
            engine = _Engine(header, onnx_bytes, np.dtype(input_dtype), delay)
            trt.engines.append(engine)
            return engine

    trt.Builder, trt.Runtime, trt.OnnxParser = Builder, Runtime, _Parser
    return trt


def _is_sensitive(layer: _Layer) -> bool:
    """Layers whose 16-bit computation the stand-in punishes: normalization, softmax, the classifier."""
    return layer.type in ("LayerType.NORMALIZATION", "LayerType.SOFTMAX") or "classifier" in layer.name


class HostIO:
    """``CudaIO`` on host memory: the stand-in engine reads and writes plain CPU tensors by address."""

    device, handle = "cpu", 0

    def __init__(self, torch: Any = None) -> None:
        import torch as torch_module

        self.torch = torch or torch_module

    def host(self, size: int, dtype: Any) -> Any:
        return self.torch.empty(size, dtype=dtype)

    def buffer(self, size: int, dtype: Any) -> Any:
        return self.torch.zeros(size, dtype=dtype)

    def ordered(self):
        import contextlib

        return contextlib.nullcontext()

    def synchronize(self) -> None:
        pass
