"""Builds an artifact directory rung by rung (see ``fastrank.export.onnx.export_model``), verifying each."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastrank.errors import FastrankError
from fastrank.export import onnx as onnx_export
from fastrank.export.onnx import MODEL_FILE, OUTPUT_NAME, Rung
from fastrank.export.verify import merged_bounds, normalize_groups, score_groups, verify
from fastrank.io import ARTIFACT, atomic_dir, model_location

logger = logging.getLogger(__name__)


class ArtifactBuilder:
    """Holds what every rung shares: the model, its fp32 reference logits, and the exported graphs by level."""

    def __init__(self, model: Any, *, optimize: str, opset: int, verify_pairs: Any,
                 bounds: dict[str, dict[str, float]] | None, int8_config: dict[str, Any],
                 num_threads: int | None, allow_untrained_head: bool = False) -> None:
        from fastrank.model import CrossEncoder

        if isinstance(model, CrossEncoder):
            self.model, self.source_dir = model, None
        else:
            model = model_location(model, "model", "a checkpoint path, a hub id or a CrossEncoder")
            self.model = CrossEncoder(model)
            self.source_dir = Path(model) if Path(model).is_dir() else None
        _check_fp32(self.model)
        self.head_initialized = _check_head(self.model, allow_untrained_head)
        prior = self.model.card_data.get("first_stage_prior")
        if prior:
            logger.warning("%s was trained with a first-stage prior (score = logit + %s x %s's score): the artifact "
                           "scores the logit alone, which is only the correction; add the first stage's weighted "
                           "score to it as fastrank.losses.prior.PriorReranker does", self.model.name_or_path,
                           prior.get("weight"), prior.get("model"))
        loaded_from = Path(self.model.name_or_path)
        self.inputs = [loaded_from] if loaded_from.is_dir() else []  # what the artifact must not replace
        if isinstance(verify_pairs, (str, Path)):
            self.inputs.append(Path(verify_pairs))  # the verification data file, which may sit in an old artifact
        self.optimize, self.opset, self.bounds = optimize, opset, bounds
        self.int8_config, self.num_threads = int8_config, num_threads
        self.groups, self.groups_source = normalize_groups(verify_pairs)
        self.encoder = self.model.pair_encoder(self.model.default_prompt)  # the artifact scores as predict() does
        self.input_names = self.model.input_names  # narrowed to the traced graph's inputs once it is exported
        self._reference = None
        self._graphs: dict[str, tuple[Path, dict[str, int]]] = {}
        self.traced_shape: tuple[int, int] | None = None

    # Pieces ------------------------------------------------------------------------------------------------------

    @property
    def reference(self):
        """PyTorch fp32 logits per verification group, one pair per forward pass (no padding)."""
        if self._reference is None:
            from fastrank.backends.torch_backend import TorchBackend

            backend = TorchBackend(self.model, "fp32")
            self._reference, _ = score_groups(self.encoder, backend.logits, self.groups, self.model.num_labels, 1)
        return self._reference

    def graph(self, work: Path, level: str, fuse_attention: bool = True) -> tuple[Path, dict[str, int]]:
        """The fp32 graph optimized at ``level`` (exported once, optimized once per level and attention choice)."""
        key = level if fuse_attention else f"{level}-attention-unfused"
        if key not in self._graphs:
            raw = work / "raw.onnx"
            if not raw.exists():
                self.traced_shape = onnx_export.export_raw(self.model, raw, self.input_names, self.opset)
                # the tracer drops an input the model never reads (DeBERTa-v3's token types, with type_vocab_size 0)
                read = onnx_export.graph_input_names(raw)
                self.input_names = tuple(n for n in self.input_names if n in read)
            path = work / f"fp32-{key}.onnx"
            self._graphs[key] = (path, onnx_export.optimize_graph(raw, path, level, self.model.config,
                                                                   fuse_attention=fuse_attention))
        return self._graphs[key]

    def cpu_graph(self, work: Path, level: str, fuse_attention: bool = True) -> tuple[Path, dict[str, int]]:
        """The graph rewritten for onnxruntime's CPU provider (``fastrank.export.rewrite``), once."""
        src, _ = self.graph(work, level, fuse_attention)
        path = src.with_name(f"{src.stem}-cpu.onnx")
        if path.stem not in self._graphs:
            self._graphs[path.stem] = (path, onnx_export.rewrite_for_cpu(src, path))
        return self._graphs[path.stem]

    def build(self, rung: Rung, rung_dir: Path, work: Path) -> dict[str, Any]:
        """Write the rung's model file(s) into ``rung_dir``; returns what was done (for the manifest)."""
        if rung.format == "torch":
            self.model.write_checkpoint(rung_dir, served_as=f"torch {rung.precision}")
            return {"optimize_applied": None, "fused_ops": {}}
        level = self.optimize
        if rung.precision == "fp16" and level == "O3":
            level = "O2"  # O3's extended fusions are CPU kernels; fp16 targets GPUs
        # int8 quantizes the attention projections as plain MatMuls, each input token scaled alone
        # (onnx_export.INT8_FUSE_ATTENTION says why)
        fuse_attention = rung.precision != "int8" or onnx_export.INT8_FUSE_ATTENTION
        src, fused = self.graph(work, level, fuse_attention)
        info: dict[str, Any] = {"optimize_applied": level, "fused_ops": fused}
        if rung.precision in ("fp32", "int8"):
            src, info["rewrites"] = self.cpu_graph(work, level, fuse_attention)
        dst = rung_dir / MODEL_FILE
        if rung.precision == "int8":
            info["quantization"] = onnx_export.quantize_int8(src, dst, self.int8_config, rung.keep_last_layer_fp32,
                                                             rung.keep_fp32)
        elif rung.precision == "fp16":
            info["conversion"] = onnx_export.convert_fp16(src, dst)
        else:
            shutil.copyfile(src, dst)
        return info

    def candidate(self, rung: Rung, rung_dir: Path):
        if rung.format == "torch":
            from fastrank.backends.torch_backend import TorchBackend

            return TorchBackend.load(rung_dir, rung.precision, device=str(self.model.device),
                                     max_length=self.model.max_length)
        from fastrank.backends.onnx_backend import OnnxBackend

        return OnnxBackend(rung_dir / MODEL_FILE, self.input_names, OUTPUT_NAME, num_threads=self.num_threads,
                           providers=["CPUExecutionProvider"], precision=rung.precision)

    def check(self, rung: Rung, rung_dir: Path) -> dict[str, Any]:
        bounds = merged_bounds(rung.precision, self.bounds)
        try:
            backend = self.candidate(rung, rung_dir)
            return verify(self.encoder, self.reference, backend.logits, self.groups, rung.precision,
                          self.model.num_labels, bounds)
        except FastrankError as exc:
            if rung.precision != "fp16":
                raise
            # fp16 graphs target GPUs; when onnxruntime's CPU provider cannot run one, say so instead of failing.
            return {"verified": False, "precision": "fp16", "bounds": bounds, "failures": [], "passed": None,
                    "reason": f"not verified: the fp16 graph does not run on onnxruntime's CPU provider ({exc})"}

    # The artifact ----------------------------------------------------------------------------------------------

    def write(self, out_dir: Path, ladder: list[tuple[Rung, str | None]], *, requested: str,
              features: dict[str, Any], allow_parity_failure: bool) -> dict[str, Any]:
        tried: list[dict[str, Any]] = []
        with atomic_dir(out_dir, keep=self.inputs, kind=ARTIFACT) as tmp:
            work = tmp / ".work"
            work.mkdir()
            shipped = None
            for rung, skip in ladder:
                if skip:
                    tried.append({"rung": rung.name, "skipped": skip})
                    continue
                rung_dir = work / f"rung-{rung.name}"
                rung_dir.mkdir()
                try:
                    info = self.build(rung, rung_dir, work)
                except onnx_export.RungNotApplicable as exc:
                    tried.append({"rung": rung.name, "skipped": str(exc)})
                    continue
                parity = self.check(rung, rung_dir)
                tried.append({"rung": rung.name, "passed": parity["passed"], "verified": parity["verified"],
                              "failures": parity["failures"]})
                shipped = (rung, rung_dir, info, parity)
                if parity["passed"] is not False:
                    break
                logger.info("rung %s failed verification: %s", rung.name, "; ".join(parity["failures"]))
            if shipped is None:
                raise FastrankError(f"precision {requested!r} has no rung to build for this model: "
                                    + "; ".join(f"{t['rung']}: {t['skipped']}" for t in tried))
            rung, rung_dir, info, parity = shipped
            failed = parity["passed"] is False
            if failed and not allow_parity_failure:
                raise onnx_export.parity_error(requested, tried)
            for item in rung_dir.iterdir():
                item.rename(tmp / item.name)
            shutil.rmtree(work)
            if rung.format == "onnx":
                self.model.tokenizer.save_pretrained(tmp)
                self.model.model.config.save_pretrained(tmp)
            manifest = self.manifest(rung, info, parity, tried, requested, features, failed, allow_parity_failure)
            from fastrank.export.manifest import write_manifest

            write_manifest(tmp, manifest)
        return manifest

    def manifest(self, rung: Rung, info: dict[str, Any], parity: dict[str, Any], tried: list[dict[str, Any]],
                 requested: str, features: dict[str, Any], failed: bool, allowed: bool) -> dict[str, Any]:
        import onnxruntime
        import torch

        import fastrank
        from fastrank.export.manifest import PROMPT_MANIFEST_VERSION, source_sha256

        sha, hashed = source_sha256(self.source_dir, self.model.model.state_dict())
        max_length = int(self.model.max_length)
        onnx_format = rung.format == "onnx"
        prompt = self.encoder.query_prefix
        return {
            "fastrank_version": fastrank.__version__,
            # a prompt needs a reader that applies it: an older fastrank refuses the artifact instead of ignoring it
            "manifest_version": PROMPT_MANIFEST_VERSION if prompt else 1,
            "format": rung.format,
            "precision": rung.precision,
            "rung": rung.name,
            "requested_precision": requested,
            "model_file": MODEL_FILE if onnx_format else None,
            "opset": self.opset if onnx_format else None,
            "optimize": self.optimize if onnx_format else None,
            "optimize_applied": info["optimize_applied"],
            "fused_ops": info["fused_ops"],
            "rewrites": info.get("rewrites"),
            "quantization": info.get("quantization"),
            "conversion": info.get("conversion"),
            "input_names": list(self.input_names),
            "output_name": OUTPUT_NAME,
            "shape_profile": _shape_profile(parity.get("shapes") or [], max_length, rung.format),
            "traced_shape": list(self.traced_shape) if onnx_format and self.traced_shape else None,
            "max_length": max_length,
            "activation": self.model.activation,
            "num_labels": int(self.model.num_labels),
            "pad_token_id": int(self.encoder.pad_token_id),
            "truncation_side": self.encoder.truncation_side,
            **({"query_prompt": prompt} if prompt else {}),
            "model_type": getattr(self.model.config, "model_type", None),
            "source": _source_name(self.model.name_or_path),
            "head_initialized": self.head_initialized,
            "source_checkpoint_sha256": sha,
            "source_hashed": hashed,
            "cpu_features": features,
            "parity": {**parity, "reference": "PyTorch fp32, one pair per forward pass",
                       "data": self.groups_source},
            "ladder": tried,
            "parity_failed": failed,
            "allow_parity_failure": bool(allowed),
            "exporter": {"method": "torch.onnx.export(dynamo=False), eager attention" if onnx_format
                         else "checkpoint copy; run with its weights cast to bfloat16",
                         "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


def _shape_profile(shapes: list[list[int]], max_length: int, fmt: str) -> dict[str, Any]:
    """The shapes the artifact takes and those its verification ran: ONNX and torch artifacts take any batch and
    any sequence up to ``max_length`` (dynamic axes; TensorRT engines record their profiles under ``tensorrt``)."""
    batches, lengths = [b for b, _ in shapes], [n for _, n in shapes]
    verified = {"batch": [min(batches), max(batches)], "sequence": [min(lengths), max(lengths)]} if shapes else None
    return {"dynamic": fmt in ("onnx", "torch"), "batch": [1, None], "sequence": [1, max_length],
            "verified": verified}


def _source_name(name_or_path: str) -> str:
    """What the manifest names as the source: a local checkpoint as an absolute path (a relative one means nothing
    once the artifact is elsewhere), a hub id as it is."""
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.is_dir() else name_or_path


def _check_fp32(model: Any) -> None:
    """FastrankError unless ``model``'s weights are fp32: the export traces them as they are and verifies against
    them as the fp32 reference, so bf16/fp16 weights give a graph onnxruntime cannot run or a mislabelled parity."""
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.model.parameters() if p.is_floating_point()})
    if dtypes and dtypes != ["float32"]:
        raise FastrankError(f"export needs the fp32 model, got weights in {', '.join(dtypes)}: load it with "
                            "dtype='float32' (the default), e.g. CrossEncoder(path), and pick the artifact's "
                            "precision with precision= (--precision: fp32, int8, fp16, bf16 or auto)")


def _check_head(model: Any, allowed: bool) -> bool:
    """Whether ``model``'s classification head is freshly initialized (a base or embedding model); refused unless
    ``allowed``, since such an artifact scores at random and differs from one export to the next."""
    if not getattr(model, "head_initialized", False):
        return False
    if not allowed:
        raise FastrankError(
            f"{model.name_or_path} has no trained classification head: a reranker exported from it scores at random; "
            "train it first with fastrank train (a model trained in this process: save it and export the saved "
            "directory), or pass allow_untrained_head=True to export it anyway")
    logger.warning("%s has no trained classification head: exporting its random head (allow_untrained_head); the "
                   "manifest records head_initialized", model.name_or_path)
    return True
