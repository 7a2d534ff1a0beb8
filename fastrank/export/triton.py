"""A Triton Inference Server model repository for an exported artifact (``fastrank export --format triton``).

Three models, so clients send text and get scores back:

- ``<name>_tokenizer`` (Python backend): QUERY and DOCUMENT strings -> input_ids / attention_mask /
  token_type_ids, with the artifact's own ``tokenizer.json`` and max_length (the same truncation as ``Reranker``),
  padded to a few fixed widths (``pad_widths``) so requests of different lengths still batch together;
- ``<name>_model``: the ONNX model (``onnxruntime`` backend, optional TensorRT accelerator with fp16 and explicit
  profiles) or the artifact's TensorRT engine (``tensorrt_plan``, an instance group listing every optimization
  profile, so Triton picks the one that fits each batch), with dynamic batching across requests;
- ``<name>`` (ensemble): tokenizer -> model, inputs QUERY/DOCUMENT, output LOGITS (raw; apply the artifact's
  activation client-side, or read ``fastrank.json``).

Clients that tokenize themselves can call ``<name>_model`` directly (putting the manifest's ``query_prompt``, if
any, before each query, as the tokenizer model does). Configs are protobuf text; the tests parse
them with Triton's own ``model_config.proto`` (from ``tritonclient``). Serving them needs a Triton server, which
this project's machines do not have: the repository layout and configs are verified, not a live Triton.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastrank.errors import FastrankError, ModelLoadError
from fastrank.export.manifest import read_manifest
from fastrank.batching import round_up
from fastrank.export.profiles import Profile, batch_limit, graph_buckets
from fastrank.io import TRITON, atomic_dir

BACKENDS = ("onnxruntime", "tensorrt")
KINDS = ("KIND_GPU", "KIND_CPU")
TOKEN_TYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32"}  # token-id dtypes a model may take, as Triton names them

_TOKENIZER_MODEL = '''"""Triton Python backend: tokenize (QUERY, DOCUMENT) pairs the way fastrank's Reranker does."""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        here = Path(__file__).parent
        manifest = json.loads((here / "fastrank.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(here / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(manifest["max_length"]), strategy="longest_first",
                                         direction=manifest.get("truncation_side") or "right")
        self.pad_id = int(manifest.get("pad_token_id", 0))
        self.outputs = manifest["input_names"]
        self.dtype = np.dtype(manifest.get("triton_token_dtype", "int64"))  # what the scoring model takes
        self.widths = manifest.get("triton_pad_widths") or []
        self.prompt = manifest.get("query_prompt") or ""  # the model's default prompt opens each query

    def execute(self, requests):
        responses = []
        for request in requests:
            queries = pb_utils.get_input_tensor_by_name(request, "QUERY").as_numpy().reshape(-1)
            docs = pb_utils.get_input_tensor_by_name(request, "DOCUMENT").as_numpy().reshape(-1)
            try:  # bytes that are not UTF-8 fail their own request, not every request batched with it
                pairs = [(self.prompt + _text(q, "QUERY", i), _text(d, "DOCUMENT", i))
                         for i, (q, d) in enumerate(zip(queries, docs))]
            except ValueError as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
                continue
            encs = self.tokenizer.encode_batch(pairs)
            longest = max(len(e.ids) for e in encs)
            # a few fixed widths: Triton's dynamic batcher merges only requests whose shapes match
            width = next((w for w in self.widths if w >= longest), -(-longest // 8) * 8)
            arrays = {name: np.zeros((len(encs), width), dtype=self.dtype) for name in self.outputs}
            arrays["input_ids"][:] = self.pad_id
            for row, enc in enumerate(encs):
                n = len(enc.ids)
                arrays["input_ids"][row, :n] = enc.ids
                if "attention_mask" in arrays:
                    arrays["attention_mask"][row, :n] = 1
                if "token_type_ids" in arrays:
                    arrays["token_type_ids"][row, :n] = enc.type_ids
            tensors = [pb_utils.Tensor(name, arrays[name]) for name in self.outputs]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses


def _text(value, name, row):
    """A BYTES element as text; ValueError naming the element when it is not UTF-8."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name} element {row} is not UTF-8 text (byte {value[exc.start]:#04x} at {exc.start}); "
                         "send UTF-8") from exc
'''


def pad_widths(max_length: int, step: int = 64, profiles: Sequence[dict[str, int]] = ()) -> list[int]:
    """The widths the tokenizer model pads each request to: every ``step`` tokens up to ``max_length`` (rounded to
    8, the runtime's padding) and each TensorRT optimization profile's ``max_seq`` (capped the same way), sorted.
    Triton batches requests across clients only when their shapes are equal (no ragged batching for token inputs),
    so per-request widths would rarely batch; a small fixed set still does. The profiles' tops keep short requests
    in the narrow profiles planned from the data (a 24-token pair padded to 64 would land in a 49-512 profile);
    the ``step`` widths cost at most ``step - 1`` padded tokens per pair elsewhere. Every width lies in the
    planned profiles, which reach ``max_length`` contiguously."""
    top = round_up(max_length, 8)
    tops = {min(_profile_top(p, i), top) for i, p in enumerate(profiles)}
    return sorted({min(s, top) for s in graph_buckets(1, max_length, step)[1]} | tops)


def _profile_top(profile: dict[str, int], index: int) -> int:
    """A TensorRT profile's ``max_seq`` (as the manifest records it), checked to be a positive integer."""
    value = profile.get("max_seq") if isinstance(profile, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"TensorRT profile {index} needs max_seq as an integer >= 1 (the manifest's "
                         f"tensorrt.profiles entries), got {profile!r}")
    return value


def _dims(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _tensor(kind: str, name: str, dtype: str, dims: Sequence[int]) -> str:
    return f"{kind} {{\n  name: \"{name}\"\n  data_type: {dtype}\n  dims: {_dims(dims)}\n}}"


def model_config(name: str, manifest: dict[str, Any], backend: str = "onnxruntime", max_batch_size: int = 64,
                 instances: int = 1, kind: str | None = None, max_queue_delay_us: int = 2000,
                 preferred_batch_sizes: Sequence[int] = (16, 32, 64), fp16: bool | None = None,
                 workspace_bytes: int = 4 << 30, engine_cache: str = "/tmp/fastrank_trt_cache",
                 token_dtype: str = "int64") -> str:
    """``config.pbtxt`` of the scoring model: token-id inputs (``token_dtype``: what the model takes; a TensorRT
    engine may take int32), a fp32 logits output, dynamic batching and instance groups.

    ``tensorrt``: the artifact's engine; its instance group lists every optimization profile, so Triton picks the
    one that fits each batch's shape. ``onnxruntime`` on GPU: the TensorRT accelerator with the same options as
    ``gpu_providers`` (precision, workspace, engine and timing caches, and one explicit profile spanning the
    artifact's length buckets or 1..max_length, so no engine is built for a new padded length).

    ``kind`` and ``fp16`` default to what the artifact was verified as: an int8 artifact (onnxruntime's CPU integer
    kernels) on ``KIND_CPU``, others on ``KIND_GPU``; the TensorRT accelerator in fp16 only for a fp16 artifact, so
    a fp32 artifact is served at the precision its parity was checked at (pass ``fp16=True`` to trade that for
    speed)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    int8 = manifest.get("precision") == "int8"
    kind = kind or ("KIND_CPU" if int8 and backend == "onnxruntime" else "KIND_GPU")
    fp16 = manifest.get("precision") == "fp16" if fp16 is None else fp16
    if int8 and kind == "KIND_GPU" and backend == "onnxruntime":
        raise ValueError("an int8 artifact runs onnxruntime's CPU integer kernels (MatMulInteger): serve it with "
                         "kind KIND_CPU, or export fp32/fp16 for a GPU")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (or None: from the artifact), got {kind!r}")
    if max_batch_size < 1 or instances < 1:
        raise ValueError(f"max_batch_size and instances must be >= 1, got {max_batch_size}, {instances}")
    preferred = sorted({b for b in preferred_batch_sizes if 1 <= b <= max_batch_size}) or [max_batch_size]
    lines = [f'name: "{name}"',
             'backend: "onnxruntime"' if backend == "onnxruntime" else 'platform: "tensorrt_plan"',
             f"max_batch_size: {max_batch_size}"]
    lines += [_tensor("input", n, TOKEN_TYPES[token_dtype], [-1]) for n in manifest["input_names"]]
    lines.append(_tensor("output", manifest.get("output_name", "logits"), "TYPE_FP32", [int(manifest.get("num_labels", 1))]))
    lines.append(f"dynamic_batching {{\n  preferred_batch_size: {_dims(preferred)}\n"
                 f"  max_queue_delay_microseconds: {max_queue_delay_us}\n}}")
    profiles = (manifest.get("tensorrt") or {}).get("profiles") or []
    if backend == "tensorrt":
        if not profiles:
            raise ModelLoadError("the artifact has no TensorRT engine; export with --format tensorrt on a GPU first")
        if kind != "KIND_GPU":
            raise ValueError("TensorRT engines run on GPUs only: kind must be KIND_GPU")
        limit = batch_limit([Profile(**p) for p in profiles])
        if max_batch_size > limit:
            raise ValueError(f"max_batch_size {max_batch_size} is above the engine's profiles' batch ({limit}); "
                             f"use --max-batch-size {limit} or re-export the engine with a larger one")
        listed = ", ".join(f'"{i}"' for i in range(len(profiles)))
        lines.append(f"instance_group {{\n  count: {instances}\n  kind: KIND_GPU\n  profile: [ {listed} ]\n}}")
    else:
        lines.append(f"instance_group {{\n  count: {instances}\n  kind: {kind}\n}}")
        if kind == "KIND_GPU":
            params = _accelerator_parameters(manifest, profiles, max_batch_size, fp16, workspace_bytes, engine_cache)
            body = "\n".join(f'      parameters {{ key: "{k}" value: "{v}" }}' for k, v in params.items())
            lines.append("optimization {\n  execution_accelerators {\n    gpu_execution_accelerator {\n"
                         f'      name: "tensorrt"\n{body}\n    }}\n  }}\n}}')
    return "\n".join(lines) + "\n"


def _accelerator_parameters(manifest: dict[str, Any], profiles: Sequence[dict[str, int]], max_batch_size: int,
                            fp16: bool, workspace_bytes: int, engine_cache: str) -> dict[str, str]:
    """The onnxruntime backend's TensorRT accelerator parameters: ``gpu_providers``' TensorRT options under
    Triton's names (one profile spanning the artifact's length buckets, or 1..max_length rounded up to 8 like the
    tokenizer's pad widths), with the batch range 1..max_batch_size (what the dynamic batcher sends)."""
    from fastrank.backends.onnx_backend import gpu_providers
    from fastrank.batching import round_up

    length = int(manifest["max_length"])
    seqs = [(int(p["min_seq"]), int(p["opt_seq"]), int(p["max_seq"])) for p in profiles] or \
        [(1, round_up(length // 2, 8), round_up(length, 8))]
    shaped = [Profile(1, max_batch_size, max_batch_size, *seq) for seq in seqs]
    (_, options), *_ = gpu_providers("tensorrt", shaped, manifest["input_names"], cache_dir=engine_cache, fp16=fp16)
    params = {"precision_mode": "FP16" if fp16 else "FP32", "max_workspace_size_bytes": str(workspace_bytes)}
    for key, value in options.items():
        if key.startswith("trt_") and key != "trt_fp16_enable":
            params[key] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return params


def tokenizer_config(name: str, manifest: dict[str, Any], max_batch_size: int, instances: int = 1,
                     token_dtype: str = "int64") -> str:
    lines = [f'name: "{name}"', 'backend: "python"', f"max_batch_size: {max_batch_size}",
             _tensor("input", "QUERY", "TYPE_STRING", [1]), _tensor("input", "DOCUMENT", "TYPE_STRING", [1])]
    lines += [_tensor("output", n, TOKEN_TYPES[token_dtype], [-1]) for n in manifest["input_names"]]
    lines.append(f"instance_group {{\n  count: {instances}\n  kind: KIND_CPU\n}}")
    return "\n".join(lines) + "\n"


def ensemble_config(name: str, tokenizer: str, model: str, manifest: dict[str, Any], max_batch_size: int) -> str:
    output = manifest.get("output_name", "logits")
    maps = "\n".join(f'      output_map {{ key: "{n}" value: "{n}" }}' for n in manifest["input_names"])
    feeds = "\n".join(f'      input_map {{ key: "{n}" value: "{n}" }}' for n in manifest["input_names"])
    return "\n".join([
        f'name: "{name}"', 'platform: "ensemble"', f"max_batch_size: {max_batch_size}",
        _tensor("input", "QUERY", "TYPE_STRING", [1]), _tensor("input", "DOCUMENT", "TYPE_STRING", [1]),
        _tensor("output", "LOGITS", "TYPE_FP32", [int(manifest.get("num_labels", 1))]),
        "ensemble_scheduling {",
        f'  step {{\n      model_name: "{tokenizer}"\n      model_version: -1\n'
        '      input_map { key: "QUERY" value: "QUERY" }\n      input_map { key: "DOCUMENT" value: "DOCUMENT" }\n'
        f"{maps}\n  }}",
        f'  step {{\n      model_name: "{model}"\n      model_version: -1\n{feeds}\n'
        f'      output_map {{ key: "{output}" value: "LOGITS" }}\n  }}',
        "}",
    ]) + "\n"


def write_repository(artifact: str | Path, out_dir: str | Path, name: str = "fastrank",
                     backend: str = "onnxruntime", max_batch_size: int = 64, instances: int = 1,
                     kind: str | None = None, engine_for: tuple[str, str] | None = None, **options: Any) -> Path:
    """Write the three-model repository for ``artifact`` (a ``fastrank export`` directory) atomically; ``kind`` and
    the accelerator's precision default to the artifact's (see ``model_config``).

    ``tensorrt``: the artifact's engine for ``engine_for`` = (compute capability, TensorRT version) of the GPU and
    Triton release that will serve it (an engine loads only there), by default this machine's."""
    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    if manifest is None or manifest["format"] != "onnx":
        raise ModelLoadError(f"{artifact} is not an ONNX artifact; run `fastrank export MODEL --out DIR` first")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"model name must be letters, digits, '-' or '_', got {name!r}")
    model_name, tok_name = f"{name}_model", f"{name}_tokenizer"
    token_dtype = "int64"
    with atomic_dir(out_dir, keep=[artifact], kind=TRITON) as root:
        (root / model_name / "1").mkdir(parents=True)
        if backend == "tensorrt":
            from fastrank.backends.tensorrt_backend import gpu_info
            from fastrank.export.tensorrt import select_engine

            target = engine_for or gpu_info()
            entry, reason = select_engine((manifest.get("tensorrt") or {}).get("engines", []), *target)
            if entry is None:
                hint = "" if engine_for else (" (for a Triton server elsewhere, name its GPU and TensorRT: "
                                              "--triton-engine SM/VERSION, e.g. 9.0/10.5.0)")
                raise FastrankError(f"cannot put a TensorRT engine in the repository: {reason}{hint}")
            shutil.copy(artifact / "tensorrt" / entry["file"], root / model_name / "1" / "model.plan")
            token_dtype = _engine_token_dtype(entry)
        else:
            shutil.copy(artifact / manifest.get("model_file", "model.onnx"), root / model_name / "1" / "model.onnx")
        (root / model_name / "config.pbtxt").write_text(
            model_config(model_name, manifest, backend, max_batch_size, instances, kind, token_dtype=token_dtype,
                         **options))
        (root / tok_name / "1").mkdir(parents=True)
        shutil.copy(artifact / "tokenizer.json", root / tok_name / "1" / "tokenizer.json")
        profiles = (manifest.get("tensorrt") or {}).get("profiles") or []
        tokenizer_manifest = {**manifest, "triton_token_dtype": token_dtype,
                              "triton_pad_widths": pad_widths(int(manifest["max_length"]), profiles=profiles)}
        (root / tok_name / "1" / "fastrank.json").write_text(json.dumps(tokenizer_manifest, indent=2, default=str))
        (root / tok_name / "1" / "model.py").write_text(_TOKENIZER_MODEL)
        (root / tok_name / "config.pbtxt").write_text(
            tokenizer_config(tok_name, manifest, max_batch_size, token_dtype=token_dtype))
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(
            ensemble_config(name, tok_name, model_name, manifest, max_batch_size))
    return Path(out_dir)


def _engine_token_dtype(entry: dict[str, Any]) -> str:
    """The token-id dtype a TensorRT engine takes (recorded at export; int64 for engines recorded without it)."""
    dtypes = set((entry.get("input_dtypes") or {"input_ids": "int64"}).values())
    if len(dtypes) != 1 or not dtypes <= set(TOKEN_TYPES):
        raise FastrankError(f"the engine {entry['file']} takes token ids as {sorted(dtypes)}; the Triton "
                            f"tokenizer writes one of {sorted(TOKEN_TYPES)} for every input")
    return dtypes.pop()
