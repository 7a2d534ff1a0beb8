"""onnxruntime backend: one InferenceSession over an exported ``model.onnx``; tokenizers + numpy, no torch."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.backends.base import Backend
from fastrank.batching import MODEL_INPUTS as TOKENIZER_OUTPUTS
from fastrank.batching import check_positive_int
from fastrank.errors import FastrankError, ModelLoadError, install_hint, require
from fastrank.export.profiles import Profile, batch_limit

logger = logging.getLogger(__name__)

# Used by default when installed, best first. TensorRT is opt-in (providers=[...]): with dynamic shapes it builds
# a new engine for every new padded length, which makes the first calls take minutes.
DEFAULT_PROVIDER_ORDER = ("CUDAExecutionProvider", "CPUExecutionProvider")


ProviderSpec = str | tuple[str, dict[str, Any]]


def choose_providers(available: Sequence[str], requested: Sequence[ProviderSpec] | None = None) -> list[ProviderSpec]:
    """Execution providers to use: ``requested`` (names or ``(name, options)``, checked against ``available``) or
    the default order. One provider given alone (``"CUDAExecutionProvider"``, or a ``(name, options)`` tuple) is a
    list of one."""
    if isinstance(requested, str) or (isinstance(requested, tuple) and len(requested) == 2
                                      and isinstance(requested[0], str) and isinstance(requested[1], dict)):
        requested = [requested]
    if requested:
        names = [p if isinstance(p, str) else p[0] for p in requested]
        missing = [p for p in names if p not in available]
        if missing:
            raise FastrankError(
                f"onnxruntime execution provider(s) {missing} are not available here; available: {list(available)}"
                f" (CUDA/TensorRT providers come with {install_hint('gpu')})"
            )
        chosen = list(requested)
    else:
        chosen = [p for p in DEFAULT_PROVIDER_ORDER if p in available]
    names = [p if isinstance(p, str) else p[0] for p in chosen]
    if "CPUExecutionProvider" not in names and "CPUExecutionProvider" in available:
        chosen.append("CPUExecutionProvider")  # fallback for nodes the accelerator cannot run
    return chosen


def merged_profile(profiles: Sequence[Profile]) -> Profile:
    """One profile spanning ``profiles``' sequence ranges at the batch every one of them covers, tuned for the
    middle profile's opt shape (planned buckets hold equal shares of the pairs, so that is near the median pair).

    onnxruntime's TensorRT provider builds every profile it is given but runs on profile 0 only (microsoft/onnxruntime
    PR #31624, still open): with several, any input wider than the first bucket fails. The native engine and
    Triton's ``tensorrt_plan`` use the planned buckets themselves."""
    if not profiles:
        raise ValueError("the TensorRT provider needs optimization profiles (fastrank.export.profiles.plan_profiles)")
    batch = batch_limit(profiles)
    middle = profiles[(len(profiles) - 1) // 2]
    return Profile(min(p.min_batch for p in profiles), min(middle.opt_batch, batch), batch,
                   min(p.min_seq for p in profiles), middle.opt_seq, max(p.max_seq for p in profiles))


def _shapes_option(profile: Profile, input_names: Sequence[str], which: int) -> str:
    """onnxruntime's profile-shape string: ``name:BxS`` per input, comma-separated."""
    batch, seq = profile.shapes()[which]
    return ",".join(f"{name}:{batch}x{seq}" for name in input_names)


def gpu_providers(kind: str, profiles: Sequence[Profile] = (), input_names: Sequence[str] = TOKENIZER_OUTPUTS,
                  cache_dir: str | Path | None = None, fp16: bool = False, device_id: int = 0) -> list[ProviderSpec]:
    """Provider list for onnxruntime-gpu. ``cuda``: the CUDA provider; ``tensorrt``: the TensorRT provider with an
    explicit optimization profile (``merged_profile`` of ``profiles``: onnxruntime runs one), so it never rebuilds
    an engine for a new padded length, engine and timing caches under ``cache_dir``, fp16 on request; both fall
    back to CUDA then CPU for unsupported nodes.

    ``fp16`` maps to the provider's ``trt_fp16_enable``, a TensorRT 10 builder flag, off by default: the parity gate
    checked the artifact at its own precision. ``trt_layer_norm_fp32_fallback`` pins only a LayerNorm decomposed into
    Pow + Reduce; fastrank exports opset 17, whose ``LayerNormalization`` nodes TensorRT runs as one normalization
    layer, so fp16 here is not the native export's checked "fp16 with sensitive layers in fp32" rung. TensorRT 11
    removed weak typing (strongly typed networks take precision from the graph), so there give the session the
    mixed-precision ONNX (``fastrank.export.tensorrt.mixed_precision_onnx``) rather than relying on the flag."""
    cuda = ("CUDAExecutionProvider", {"device_id": device_id, "arena_extend_strategy": "kSameAsRequested",
                                      "cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": True})
    if kind == "cuda":
        return [cuda, "CPUExecutionProvider"]
    if kind != "tensorrt":
        raise ValueError(f"kind must be 'cuda' or 'tensorrt', got {kind!r}")
    profile = merged_profile(profiles)
    options: dict[str, Any] = {
        "device_id": device_id, "trt_fp16_enable": bool(fp16),
        "trt_profile_min_shapes": _shapes_option(profile, input_names, 0),
        "trt_profile_opt_shapes": _shapes_option(profile, input_names, 1),
        "trt_profile_max_shapes": _shapes_option(profile, input_names, 2),
        "trt_layer_norm_fp32_fallback": True,
    }
    if cache_dir is not None:
        options.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
                        "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache_dir)})
    return [("TensorrtExecutionProvider", options), cuda, "CPUExecutionProvider"]


def profile_batch_limit(providers: Sequence[ProviderSpec]) -> int | None:
    """The largest batch the TensorRT provider's explicit profiles (``trt_profile_max_shapes``) cover, so the
    reranker never sends a batch that would make it build another engine; None without explicit profiles."""
    for spec in providers:
        if isinstance(spec, tuple) and spec[0] == "TensorrtExecutionProvider":
            shapes = str(spec[1].get("trt_profile_max_shapes") or "")
            batches = [int(item.rsplit(":", 1)[1].split("x")[0]) for item in shapes.split(",") if ":" in item]
            return min(batches) if batches else None
    return None


class OnnxBackend(Backend):
    """Scores batches with onnxruntime.

    Args:
        model_path: the ``.onnx`` file.
        input_names: the inputs the tokenizer side will provide (from the manifest); the graph's inputs must be
            exactly these, else ``ModelLoadError`` says which differ.
        output_name: the logits output (``logits``).
        num_threads: ``intra_op_num_threads`` of this session only (None = onnxruntime's default, all cores). With
            several sessions, the threads are shared out among them (None = every core this process may use).
        providers: execution providers, e.g. ``["CUDAExecutionProvider"]``; default: CUDA when installed, else CPU.
        precision: recorded in ``describe()`` (the manifest's precision).
        sessions: CPU only: this many sessions of the same model, each with its share of the threads, that score
            different batches at the same time (``scorers()``). Small batches of short pairs keep one or two threads
            busier than onnxruntime's intra-op pool does: on 2 cores, 2 one-thread sessions scored 8-14% more int8
            pairs/s on short pairs than one two-thread session (``python -m bench runtime-ab``; see
            ``auto_sessions``). Each session holds its own copy of the weights.
    """

    name = "onnx"

    def __init__(
        self,
        model_path: str | Path,
        input_names: Sequence[str] | None = None,
        output_name: str = "logits",
        num_threads: int | None = None,
        providers: Sequence[ProviderSpec] | None = None,
        precision: str | None = None,
        sessions: int = 1,
    ) -> None:
        ort = require("onnxruntime", "onnx", "the ONNX backend")
        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"ONNX model file {str(path)!r} does not exist")
        num_threads = check_positive_int(num_threads, "num_threads", optional=True)
        sessions = check_positive_int(sessions, "sessions")
        self.path = path
        chosen = choose_providers(ort.get_available_providers(), providers)
        threads = num_threads
        if sessions > 1:
            threads = max(1, (num_threads or available_cores()) // sessions)
        self.session = self._session(ort, threads, chosen)
        cpu_only = self.session.get_providers() == ["CPUExecutionProvider"]
        if sessions > 1 and not cpu_only:
            raise ValueError(f"sessions={sessions} needs the CPU execution provider; this session runs on "
                             f"{self.session.get_providers()[0]} (use one session on a GPU)")
        self._sessions = [self.session] + [self._session(ort, threads, chosen) for _ in range(sessions - 1)]
        if cpu_only:
            self.pad_multiple = 1
        if "TensorrtExecutionProvider" in self.session.get_providers():
            self.max_batch = profile_batch_limit(chosen)
        self.sessions = sessions
        self.num_threads = num_threads
        self.precision = precision
        self.output_name = output_name
        self._check_io(input_names)

    def _session(self, ort, threads: int | None, providers: list[ProviderSpec]):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, NoSuchFile...)
            raise ModelLoadError(f"onnxruntime could not load {str(self.path)!r}: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def from_artifact(cls, path: Path, manifest: dict[str, Any] | None, num_threads: int | None = None,
                      providers: Sequence[ProviderSpec] | None = None, sessions: int = 1) -> OnnxBackend:
        """The ``model.onnx`` of an exported artifact directory, checked against its manifest."""
        if manifest is None:
            raise ModelLoadError(
                f"{path} has no fastrank.json, so it is not an exported artifact; export it first: "
                f"fastrank export {path} --out {Path(path).name}-onnx"
            )
        if manifest["format"] != "onnx":
            raise ModelLoadError(f"{path} is an exported {manifest['format']} artifact; open it with backend='auto' or "
                                 f"{manifest['format']!r}")
        return cls(Path(path) / manifest.get("model_file", "model.onnx"), manifest["input_names"],
                   manifest["output_name"], num_threads=num_threads, providers=providers,
                   precision=manifest["precision"], sessions=sessions)

    def _check_io(self, expected: Sequence[str] | None) -> None:
        graph_inputs = {i.name: i.type for i in self.session.get_inputs()}
        unknown = [n for n in graph_inputs if n not in TOKENIZER_OUTPUTS]
        if expected is not None and set(expected) != set(graph_inputs):
            unknown = unknown or sorted(set(graph_inputs) ^ set(expected))
        if unknown or "input_ids" not in graph_inputs:
            raise ModelLoadError(
                f"{self.path}: the graph's inputs {sorted(graph_inputs)} do not match what the tokenizer provides "
                f"({sorted(expected) if expected is not None else list(TOKENIZER_OUTPUTS)}); mismatched: {unknown or ['input_ids']}."
                " Re-export the model with `fastrank export` so the graph and tokenizer agree"
            )
        wrong_type = {n: t for n, t in graph_inputs.items() if t != "tensor(int64)"}
        if wrong_type:
            raise ModelLoadError(f"{self.path}: inputs must be int64 token ids, got {wrong_type}")
        outputs = {o.name: o for o in self.session.get_outputs()}
        if self.output_name not in outputs:
            raise ModelLoadError(f"{self.path}: no output named {self.output_name!r}; outputs: {sorted(outputs)}")
        shape = outputs[self.output_name].shape
        self.num_labels = int(shape[-1]) if shape and isinstance(shape[-1], int) else 1
        self.input_names = tuple(n for n in TOKENIZER_OUTPUTS if n in graph_inputs)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self._run(self.session, batch)

    def scorers(self) -> list[Callable[[dict[str, np.ndarray]], np.ndarray]]:
        """One scoring function per session (``run_batches`` runs them on their own threads); ``[logits]`` when
        there is one."""
        if len(self._sessions) == 1:
            return [self.logits]
        return [lambda batch, s=session: self._run(s, batch) for session in self._sessions]

    def _run(self, session, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in self._select_inputs(batch).items()}
        n = len(feed["input_ids"])
        try:
            (out,) = session.run([self.output_name], feed)
        except Exception as exc:
            shapes = {k: v.shape for k, v in feed.items()}
            raise FastrankError(f"onnxruntime failed on a batch of shapes {shapes}: {type(exc).__name__}: {exc}") from exc
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 1:
            out = out[:, None]
        if out.shape[0] != n:
            raise FastrankError(f"{self.path}: expected {n} rows of logits, got shape {out.shape}")
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "precision": self.precision, "providers": self.providers,
                "num_threads": self.num_threads, "sessions": self.sessions, "model_file": str(self.path)}


def auto_sessions(num_threads: int | None = None, providers: Sequence[ProviderSpec] | None = None,
                 precision: str | None = "int8") -> int:
    """``sessions="auto"``: 2 sessions for an int8 model that onnxruntime runs on the CPU with at least 2 threads,
    else 1.

    Measured on 2 cores (2 one-thread sessions with batches of 8 vs one two-thread session with batches of 32,
    interleaved, ``python -m bench runtime-ab``, two runs): int8 +14% / +8% pairs/s on short pairs, +2% / -0.5% on
    long ones; fp32 +5% / +3% short but -3% / -2% long (its 4x larger weights, held twice, crowd the cache), so fp32
    keeps one session. On bigger CPUs each of the 2 sessions gets half of the threads.
    """
    if precision != "int8":
        return 1
    ort = require("onnxruntime", "onnx", "the ONNX backend")
    chosen = choose_providers(ort.get_available_providers(), providers)
    first = chosen[0] if isinstance(chosen[0], str) else chosen[0][0]
    return 2 if first == "CPUExecutionProvider" and (num_threads or available_cores()) >= 2 else 1


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
