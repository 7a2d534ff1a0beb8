"""TensorRT engines for an exported ONNX artifact: optimization profiles, precision ladder, engine selection.

``export_tensorrt`` writes a normal fp32 ONNX artifact (so the model still runs anywhere) plus ``tensorrt/``: one
engine per (GPU compute capability, TensorRT version, precision) with its timing cache, listed in the manifest's
``tensorrt`` section with the profiles it was built for and its parity against PyTorch. ``select_engine`` picks the
engine that fits the GPU and TensorRT at hand or says why none does, and the loader falls back to ONNX.

Two builder APIs are supported:
- TensorRT 10: a weakly typed network; fp16 through ``BuilderFlag.FP16``, with LayerNorm/Softmax/reduction layers
  pinned to fp32 (``OBEY_PRECISION_CONSTRAINTS``) on the "fp16-fp32-sensitive" rung.
- TensorRT 11+: strongly typed networks only, no FP16 flag: precision comes from the ONNX file, so fp16 rungs are
  built from a mixed-precision ONNX that keeps normalization, residual adds, softmax and the classifier in fp32.
  The bf16 rung is skipped there (fastrank writes no bf16 ONNX), and the manifest says so.

Code that needs a GPU (building, running) is marked so in the README's support matrix; everything that decides
something (profiles, keys, selection, ladders, layer choices) runs on any machine and is unit-tested.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastrank.errors import FastrankError, install_hint
from fastrank.export.profiles import Profile

logger = logging.getLogger(__name__)

ENGINE_DIR = "tensorrt"
GPU_LADDER = ("fp16", "fp16-fp32-sensitive", "bf16", "fp32")
# Op types kept in fp32 on the sensitive rungs: normalization statistics, softmax and residual sums overflow or lose
# precision in fp16; the classifier's single logit decides the ranking.
SENSITIVE_OP_TYPES = ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization", "Softmax",
                      "ReduceMean", "Pow", "Sqrt", "Div", "Add")
SENSITIVE_LAYER_WORDS = ("norm", "softmax", "classifier", "reduce", "pow", "sqrt")


@dataclass(frozen=True)
class EngineRung:
    """A GPU precision rung: the builder precision and whether sensitive layers stay fp32."""

    name: str
    precision: str
    keep_sensitive_fp32: bool = False


GPU_RUNGS = {
    "fp16": EngineRung("fp16", "fp16"),
    "fp16-fp32-sensitive": EngineRung("fp16-fp32-sensitive", "fp16", keep_sensitive_fp32=True),
    "bf16": EngineRung("bf16", "bf16"),
    "fp32": EngineRung("fp32", "fp32"),
}


def trt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError as exc:
        raise FastrankError(f"cannot read a TensorRT version from {version!r}") from exc


def builder_api(version: str) -> str:
    """``weakly-typed`` (TensorRT 10: builder flags choose precision) or ``strongly-typed`` (TensorRT 11+). Older
    releases are refused: the runtime's name-based calls (``set_input_shape``, ``execute_async_v3``) need 8.5 and
    ``BuilderFlag.BF16`` 9.0, and the ``tensorrt`` extra asks for 10."""
    major = trt_major(version)
    if major < 10:
        raise FastrankError(f"TensorRT {version} is too old; fastrank supports TensorRT 10 and 11")
    return "strongly-typed" if major >= 11 else "weakly-typed"


def engine_file(compute_capability: str, trt_version: str, rung: str) -> str:
    """Engine file name keyed by what makes an engine loadable: GPU compute capability, TensorRT version, rung."""
    cc = str(compute_capability).replace(".", "")
    return f"engine-sm{cc}-trt{trt_version}-{rung}.plan"


def select_engine(entries: Sequence[dict[str, Any]], compute_capability: str | None,
                  trt_version: str | None) -> tuple[dict[str, Any] | None, str]:
    """The engine entry built for this GPU and TensorRT (serialized engines are tied to both), or None and why.

    Among compatible entries the one that passed verification at the fastest rung wins (GPU_LADDER order).
    """
    if not entries:
        return None, "the artifact has no TensorRT engines (export with --format tensorrt on a GPU machine)"
    if trt_version is None:
        return None, f"TensorRT is not installed ({install_hint('tensorrt')})"
    if compute_capability is None:
        return None, "no CUDA GPU is visible"
    cc = str(compute_capability)
    fits = [e for e in entries if str(e["compute_capability"]) == cc and str(e["tensorrt_version"]) == trt_version]
    if not fits:
        built = ", ".join(f"sm{e['compute_capability']} / TensorRT {e['tensorrt_version']}" for e in entries)
        return None, (f"no engine for this GPU (sm{cc}) with TensorRT {trt_version}; the artifact has engines for "
                      f"{built}. Engines only load on the GPU architecture and TensorRT version that built them: "
                      "re-run `fastrank export --format tensorrt` here")
    fits.sort(key=lambda e: GPU_LADDER.index(e["rung"]) if e["rung"] in GPU_LADDER else len(GPU_LADDER))
    return fits[0], "ok"


def sensitive_layer(name: str, layer_type: str) -> bool:
    """True for layers a TensorRT 10 "fp16-fp32-sensitive" build pins to fp32 (by type name or layer name); the
    build also pins the head (pooler and classifier, ``classifier_nodes``), as the mixed-precision ONNX keeps it."""
    text = f"{name} {layer_type}".lower()
    return any(word in text for word in SENSITIVE_LAYER_WORDS)


def head_layer(name: str, head: set[str]) -> bool:
    """Whether a TensorRT layer came from one of the ``head`` ONNX nodes: it bears the node's name, or the name plus
    ``_N`` for the further layers one node becomes (a Gemm: matrix multiply, then bias add), as onnx-tensorrt's
    ImporterContext names them (generateUniqueName)."""
    base, _, suffix = name.rpartition("_")
    return name in head or (suffix.isdigit() and base in head)


def classifier_nodes(model_proto: Any) -> list[str]:
    """Nodes after the last LayerNormalization-like node: pooler and classifier, kept fp32 in mixed precision."""
    nodes = list(model_proto.graph.node)
    last = max((i for i, n in enumerate(nodes) if "LayerNormalization" in n.op_type), default=-1)
    return [n.name for n in nodes[last + 1:]]


def mixed_precision_onnx(src: Path, dst: Path) -> dict[str, Any]:
    """fp16 ONNX with normalization, residual adds, softmax and the classifier kept fp32 (for strongly typed
    TensorRT 11 builds and for onnxruntime's CUDA provider); inputs and logits stay fp32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    keep_nodes = classifier_nodes(model)
    # a given op_block_list replaces onnxruntime's default one (Range, Min, Max, CumSum, TopK ...): keep both
    present = {n.op_type for n in model.graph.node}
    blocked = list(SENSITIVE_OP_TYPES) + [op for op in DEFAULT_OP_BLOCK_LIST if op not in SENSITIVE_OP_TYPES]
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked, node_block_list=keep_nodes)
    onnx.save(converted, str(dst))
    from_default = sorted(set(DEFAULT_OP_BLOCK_LIST) & present - set(SENSITIVE_OP_TYPES))
    return {"method": "convert_float_to_float16", "fp32_op_types": list(SENSITIVE_OP_TYPES) + from_default,
            "fp32_nodes": keep_nodes}


def _float_layer(layer: Any, trt: Any) -> bool:
    """True when every output of ``layer`` is a floating-point data tensor. Only these can be pinned to fp32:
    TensorRT refuses fp32 for layers that make integer or shape tensors (constants holding indices, the shape
    arithmetic a parser adds around a node), and their names can still match the sensitive words or the head."""
    floats = {getattr(trt, name) for name in ("float32", "float16", "bfloat16") if hasattr(trt, name)}
    outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
    return bool(outputs) and all(o.dtype in floats and not getattr(o, "is_shape_tensor", False) for o in outputs)


def _add_profiles(builder, config, network, profiles: Sequence[Profile], input_names: Sequence[str]) -> None:
    for profile in profiles:
        p = builder.create_optimization_profile()
        lo, opt, hi = profile.shapes()
        for name in input_names:
            p.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(p)


def build_engine(onnx_path: Path, engine_path: Path, profiles: Sequence[Profile], rung: EngineRung,
                 input_names: Sequence[str], timing_cache: Path | None = None, workspace_gib: float = 4.0,
                 trt: Any = None) -> dict[str, Any]:
    """Build and serialize one engine (needs a GPU and TensorRT). For TensorRT 11+ ``onnx_path`` must already hold
    the rung's precision (see ``mixed_precision_onnx``); for 10 the builder flags set it."""
    if trt is None:
        from fastrank.errors import require

        trt = require("tensorrt", "tensorrt", "TensorRT engines")
    api = builder_api(trt.__version__)
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    # TensorRT 11 keeps STRONGLY_TYPED as an ignored flag (every network is strongly typed); 10 deprecates and
    # ignores EXPLICIT_BATCH. Set what exists, so a later release that drops either still builds.
    flag_name = "STRONGLY_TYPED" if api == "strongly-typed" else "EXPLICIT_BATCH"
    flag = getattr(trt.NetworkDefinitionCreationFlag, flag_name, None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FastrankError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    pinned = 0
    if api == "weakly-typed" and rung.precision in ("fp16", "bf16"):
        config.set_flag(trt.BuilderFlag.FP16 if rung.precision == "fp16" else trt.BuilderFlag.BF16)
        if rung.keep_sensitive_fp32:
            import onnx

            head = set(classifier_nodes(onnx.load(str(onnx_path), load_external_data=False)))
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            for i in range(network.num_layers):
                layer = network.get_layer(i)
                if (sensitive_layer(layer.name, str(layer.type)) or head_layer(layer.name, head)) \
                        and _float_layer(layer, trt):
                    layer.precision = trt.float32
                    for j in range(layer.num_outputs):
                        layer.set_output_type(j, trt.float32)
                    pinned += 1
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        # a cache made on another device of the same compute capability (A100 then A30): its timings would mislead
        # tactic choice, so start afresh and replace it with this device's
        logger.warning("%s was made on another GPU; building without it and writing this GPU's timings",
                       timing_cache)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    _add_profiles(builder, config, network, profiles, input_names)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FastrankError(f"TensorRT failed to build the {rung.name} engine (see the TensorRT log above)")
    engine_path.write_bytes(bytes(serialized))
    built_cache = config.get_timing_cache()
    if timing_cache is not None and built_cache is not None:
        timing_cache.write_bytes(bytes(built_cache.serialize()))
    return {"builder_api": api, "layers_pinned_fp32": pinned, "bytes": engine_path.stat().st_size}


def export_tensorrt(model: Any, out_dir: str | Path, verify_pairs: Any = None, *, ladder: Sequence[str] = GPU_LADDER,
                    max_batch: int = 64, num_profiles: int = 3, allow_parity_failure: bool = False,
                    trt: Any = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export ``model`` to a fp32 ONNX artifact plus the first TensorRT engine on ``ladder`` that passes the parity
    gate (the CPU export's bounds and batch configurations, for the rung's precision). Needs a CUDA GPU and TensorRT
    (``trt``: the module, default the installed one).

    ``model`` may also be a fp32 ONNX artifact (a directory with ``fastrank.json``): an engine for this GPU and
    TensorRT is then added to the ones it has (replacing one built for the same pair), with the artifact's
    profiles, and verified against the artifact's ONNX model, itself verified against PyTorch when written. So one
    artifact can carry engines for several GPU generations; the loader picks the one that fits.

    Each engine records the rungs tried (``ladder``) with their parity failures. With ``allow_parity_failure`` and
    no rung passing, the last rung tried is kept and marked ``parity_failed``. Strongly typed TensorRT (11+) takes
    its precision from the ONNX file; fastrank writes fp16 and mixed fp16 ONNX itself but has no bf16 conversion,
    so the bf16 rung is skipped there (recorded with the reason). ``progress(text)`` hears of each step (a build
    takes minutes).
    """
    import tempfile

    from fastrank.backends.tensorrt_backend import TensorRTBackend, gpu_info
    from fastrank.errors import ParityError
    from fastrank.export.manifest import read_manifest, write_manifest
    from fastrank.export.profiles import batch_limit, plan_profiles
    from fastrank.export.verify import VERIFY_CONFIGS, merged_bounds, normalize_groups, score_groups, verify
    from fastrank.io import ARTIFACT, atomic_dir, check_output_dir, model_location
    from fastrank.reranker import artifact_encoder

    if isinstance(model, os.PathLike):  # pytest's tmpdir, a UPath: a Path, as the checks below read paths
        model = model_location(model, "model")
    cc, trt_version = gpu_info()
    if cc is None or trt_version is None:
        raise FastrankError(f"--format tensorrt needs a CUDA GPU and TensorRT ({install_hint('tensorrt')}); "
                            "--format onnx runs anywhere")
    unknown = [r for r in ladder if r not in GPU_RUNGS]
    if unknown or not ladder:
        raise ValueError(f"unknown GPU rungs {unknown or list(ladder)}; known: {', '.join(GPU_LADDER)}")
    # adding an engine to an artifact in place is meant; replacing the checkpoint it came from is not
    local = isinstance(model, (str, Path)) and Path(model).is_dir()
    keep = [model] if local and read_manifest(model) is None else []
    keep += [verify_pairs] if isinstance(verify_pairs, (str, Path)) else []  # a data file inside out_dir
    check_output_dir(out_dir, keep, ARTIFACT)  # before minutes of engine builds
    strongly_typed = builder_api(trt_version) == "strongly-typed"
    say = progress or (lambda text: None)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "onnx"
        manifest, reference_logits = _onnx_base(model, base, verify_pairs)
        encoder = artifact_encoder(base, manifest)
        groups, _ = normalize_groups(verify_pairs)
        section = manifest.get("tensorrt") or {}
        if section.get("profiles"):  # engines already in the artifact: the new one serves the same shapes
            profiles = [Profile(**p) for p in section["profiles"]]
        else:
            planned = [g for g in groups if not g.builtin] or groups  # the caller's lengths, when given
            lengths = encoder.encode([(g.query, d) for g in planned for d in g.documents]).lengths
            profiles = plan_profiles(lengths, encoder.max_length, max_batch, num_profiles)
        max_batch = batch_limit(profiles)
        num_labels = int(manifest.get("num_labels", 1))
        reference, _ = score_groups(encoder, reference_logits, groups, num_labels, max_batch)
        configs = [{**c, "batch_size": min(c["batch_size"], max_batch)} for c in VERIFY_CONFIGS]
        engines_dir = base / ENGINE_DIR
        engines_dir.mkdir(exist_ok=True)
        cache = f"timing-sm{cc}-trt{trt_version}.cache"
        runnable = [n for n in ladder if not (strongly_typed and GPU_RUNGS[n].precision == "bf16")]
        tried: list[dict[str, Any]] = []
        chosen = None
        for name in ladder:
            rung = GPU_RUNGS[name]
            if name not in runnable:
                tried.append({"rung": name, "skipped": "strongly typed TensorRT needs a bf16 ONNX, which fastrank "
                                                       "does not write"})
                continue
            src = base / "model.onnx"
            if strongly_typed and rung.precision == "fp16":
                src = Path(tmp) / f"{name}.onnx"
                (mixed_precision_onnx if rung.keep_sensitive_fp32 else _plain_fp16)(base / "model.onnx", src)
            file = engine_file(cc, trt_version, name)
            say(f"{name}: building the engine for sm{cc} with TensorRT {trt_version} ({len(profiles)} profiles)")
            info = build_engine(src, Path(tmp) / file, profiles, rung, manifest["input_names"], engines_dir / cache,
                                trt=trt)
            backend = TensorRTBackend(Path(tmp) / file, manifest["input_names"], profiles,
                                      manifest.get("output_name", "logits"), trt=trt)
            report = verify(encoder, reference, backend.logits, groups, rung.precision, num_labels,
                            merged_bounds(rung.precision), configs)
            info["input_dtypes"] = {n: str(backend.dtypes[n]) for n in manifest["input_names"]}
            del backend  # free its device buffers before the next build
            failures = report["failures"]
            say(f"{name}: " + ("failed verification: " + "; ".join(failures) if failures else
                               f"passed verification (max |dlogit| {report['max_abs_logit']:.2e})"))
            tried.append({"rung": name, "passed": not failures, "failures": failures})  # as the CPU ladder's
            if not failures or (allow_parity_failure and name == runnable[-1]):
                chosen = {"file": file, "rung": name, "precision": rung.precision, "compute_capability": cc,
                          "tensorrt_version": trt_version, "timing_cache": cache, "parity": report,
                          "parity_failed": bool(failures), **info}
                break
        if chosen is None:
            raise ParityError("no TensorRT rung passed verification: " + "; ".join(
                f"{t['rung']}: {t.get('skipped') or ', '.join(t['failures'])}" for t in tried))
        chosen["ladder"] = tried
        kept = []
        for entry in section.get("engines", []):  # one engine per (GPU, TensorRT): a rebuild replaces the old one
            if (str(entry["compute_capability"]), str(entry["tensorrt_version"])) == (cc, trt_version):
                (engines_dir / entry["file"]).unlink(missing_ok=True)
            else:
                kept.append(entry)
        shutil.move(str(Path(tmp) / chosen["file"]), engines_dir / chosen["file"])
        in_place = local and Path(model).expanduser().resolve() == Path(out_dir).expanduser().resolve()
        with _locked_parent(Path(out_dir)):  # GPU machines adding engines to one shared artifact: one at a time
            if in_place:  # another machine may have added its engine to this artifact meanwhile
                kept += _engines_added_meanwhile(Path(out_dir), base, kept + [chosen], profiles)
            manifest["tensorrt"] = {"profiles": [p.to_dict() for p in profiles], "engines": kept + [chosen]}
            write_manifest(base, manifest)
            with atomic_dir(out_dir, keep, kind=ARTIFACT) as target:
                shutil.copytree(base, target, dirs_exist_ok=True)
    return manifest


@contextlib.contextmanager
def _locked_parent(out_dir: Path):
    """An exclusive lock on ``out_dir``'s parent folder (flock on the directory itself, so no lock file is left
    behind), held while an artifact is re-read and replaced; a no-op where flock does not exist."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    parent = out_dir.expanduser().resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _engines_added_meanwhile(out_dir: Path, base: Path, ours: list[dict[str, Any]],
                             profiles: Sequence[Profile]) -> list[dict[str, Any]]:
    """Engines another export added to ``out_dir`` while this one built (a shared artifact that several GPU
    machines add to), copied into ``base`` so that replacing ``out_dir`` keeps them; they were lost. Refused when
    ``out_dir`` now holds another ONNX model or other profiles, which this engine was not built for."""
    from fastrank.export.manifest import read_manifest

    current = read_manifest(out_dir) if out_dir.is_dir() else None
    if not current or not (current.get("tensorrt") or {}).get("engines"):
        return []
    taken = {(str(e["compute_capability"]), str(e["tensorrt_version"])) for e in ours}
    new = [e for e in current["tensorrt"]["engines"]
           if (str(e["compute_capability"]), str(e["tensorrt_version"])) not in taken]
    if not new:
        return []
    same_model = _sha256(out_dir / "model.onnx") == _sha256(base / "model.onnx")
    if not same_model or current["tensorrt"].get("profiles") != [p.to_dict() for p in profiles]:
        raise FastrankError(f"{out_dir} changed while this engine was built: another export wrote another model or "
                            "other profiles there; run this export again to build for what it holds now")
    for entry in new:
        for name in (entry["file"], entry.get("timing_cache")):
            if name and (out_dir / ENGINE_DIR / name).is_file():
                shutil.copy2(out_dir / ENGINE_DIR / name, base / ENGINE_DIR / name)
    return new


def _sha256(path: Path) -> str | None:
    from fastrank.export.manifest import feed_file

    if not path.is_file():
        return None
    digest = hashlib.sha256()
    feed_file(digest, path)
    return digest.hexdigest()


def _onnx_base(model: Any, base: Path, verify_pairs: Any) -> tuple[dict[str, Any], Any]:
    """Write the fp32 ONNX artifact the engines are built from into ``base``: exported from ``model`` (a checkpoint
    or CrossEncoder; PyTorch is the parity reference) or copied from ``model`` when it already is one (its ONNX
    model is the reference). Returns (manifest, reference logits function)."""

    from fastrank.export.manifest import read_manifest

    existing = read_manifest(model) if isinstance(model, (str, Path)) and Path(model).is_dir() else None
    if existing is None:
        from fastrank.backends.torch_backend import TorchBackend
        from fastrank.export.onnx import export_model

        manifest = export_model(model, base, precision="fp32", optimize="O1", verify_pairs=verify_pairs)
        torch_ref = TorchBackend.load(model) if isinstance(model, (str, Path)) else TorchBackend(model)
        return manifest, torch_ref.logits
    if existing["format"] != "onnx" or existing["precision"] != "fp32":
        raise FastrankError(f"{model} is an exported {existing['format']} {existing['precision']} artifact; "
                            "TensorRT engines are built from a fp32 ONNX artifact (or from the checkpoint itself)")
    import onnx

    graph = onnx.load(str(Path(model) / existing["model_file"]), load_external_data=False).graph
    fused = sorted({f"{n.domain}:{n.op_type}" for n in graph.node if n.domain not in ("", "ai.onnx")})
    if fused:
        raise FastrankError(f"{model} holds onnxruntime's fused ops ({', '.join(fused)}; optimize level "
                            f"{existing.get('optimize_applied')}), which TensorRT cannot parse. Export the engine "
                            "from an artifact made with --optimize O1 (or O0), or from the checkpoint itself")
    from fastrank.backends.onnx_backend import OnnxBackend

    shutil.copytree(model, base)
    return existing, OnnxBackend.from_artifact(base, existing).logits


def _plain_fp16(src: Path, dst: Path) -> dict[str, Any]:
    from fastrank.export.onnx import convert_fp16

    return convert_fp16(src, dst)

