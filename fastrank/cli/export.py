"""``fastrank export``: a checkpoint to a verified ONNX (or torch bf16) artifact directory, an ONNX artifact plus a
verified TensorRT engine, or a Triton model repository of an artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fastrank.cli.output import print_json

FORMATS = ("onnx", "tensorrt", "triton")


def export_artifact(
    model: str, out: str, precision: str = "fp32", optimize: str = "O2", verify_data: str | None = None,
    allow_parity_failure: bool = False, fmt: str = "onnx", triton_backend: str = "onnxruntime",
    max_batch_size: int = 64, tensorrt_rungs: str | None = None, profiles: int = 3, triton_kind: str = "auto",
    triton_precision: str = "auto", allow_untrained_head: bool = False, triton_engine: str = "auto",
) -> dict[str, Any]:
    """Export ``model`` to ``out``; returns the manifest. ``verify_data`` is grouped JSONL (query, documents, labels),
    read by the export and named in the manifest's parity section.

    ``onnx``: a verified ONNX (or bf16 torch) artifact. ``tensorrt``: that plus a verified TensorRT engine (GPU
    machine). ``triton``: a Triton model repository built from ``model``, which must be an ONNX artifact directory.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)} (bf16 is written as a torch artifact by "
                         f"--precision bf16), got {fmt!r}")
    if fmt == "triton":
        from fastrank.export.manifest import read_manifest
        from fastrank.export.triton import write_repository

        if triton_precision not in ("auto", "fp16", "fp32"):
            raise ValueError(f"--triton-precision must be auto, fp16 or fp32, got {triton_precision!r}")
        if triton_kind not in ("auto", "KIND_GPU", "KIND_CPU"):
            raise ValueError(f"--triton-kind must be auto, KIND_GPU or KIND_CPU, got {triton_kind!r}")
        write_repository(model, out, backend=triton_backend, max_batch_size=max_batch_size,
                         kind=None if triton_kind == "auto" else triton_kind, engine_for=_engine_target(triton_engine),
                         fp16=None if triton_precision == "auto" else triton_precision == "fp16")
        return {"format": "triton", "repository": out, "backend": triton_backend, "artifact": read_manifest(model)}
    if fmt == "tensorrt":
        from fastrank.export.tensorrt import GPU_LADDER, export_tensorrt

        ladder = GPU_LADDER if tensorrt_rungs is None else tuple(r.strip() for r in tensorrt_rungs.split(",") if r)
        return export_tensorrt(model, out, verify_data, ladder=ladder, max_batch=max_batch_size, num_profiles=profiles,
                               allow_parity_failure=allow_parity_failure,
                               progress=lambda text: typer.echo(f"export: {text}", err=True))
    from fastrank.export import export_model

    _check_out_before_loading(model, out, verify_data)
    return export_model(model, out, precision=precision, optimize=optimize, verify_pairs=verify_data,
                        allow_parity_failure=allow_parity_failure, allow_untrained_head=allow_untrained_head)


def _check_out_before_loading(model: str, out: str, verify_data: str | None) -> None:
    """Refuse a bad --out (not creatable, not a fastrank output, holding the model or the data) before the model
    loads, so the error comes at once and not after seconds of loading."""
    from fastrank.io import ARTIFACT, check_output_dir

    check_output_dir(out, keep=[model, verify_data], kind=ARTIFACT)


def _engine_target(text: str) -> tuple[str, str] | None:
    """``--triton-engine``: ``auto`` (None: this machine's GPU and TensorRT) or ``SM/VERSION`` like ``9.0/10.5.0``."""
    if text == "auto":
        return None
    cc, sep, version = text.partition("/")
    if not sep or not cc or not version or not cc.replace(".", "").isdigit():
        raise ValueError(f"--triton-engine must be auto or COMPUTE_CAPABILITY/TENSORRT_VERSION like 9.0/10.5.0, "
                         f"got {text!r}")
    return cc, version


# The options each --format reads; one given for another format is refused rather than silently ignored.
FORMAT_OPTIONS = {
    "onnx": ("--precision", "--optimize", "--verify-data", "--allow-parity-failure", "--allow-untrained-head"),
    "tensorrt": ("--verify-data", "--allow-parity-failure", "--max-batch-size", "--tensorrt-rungs", "--profiles"),
    "triton": ("--triton-backend", "--max-batch-size", "--triton-kind", "--triton-precision", "--triton-engine"),
}


def check_format_options(fmt: str, given: list[str]) -> None:
    """BadParameter naming each of ``given`` (options set to other than their defaults) that ``fmt`` ignores, and
    the formats that read it."""
    stray = [name for name in given if fmt in FORMAT_OPTIONS and name not in FORMAT_OPTIONS[fmt]]
    if not stray:
        return
    where = "; ".join(f"{name} is for --format {' / '.join(f for f, names in FORMAT_OPTIONS.items() if name in names)}"
                      for name in stray)
    hint = (" (a Triton repository serves an exported artifact as it is: export it first with those options)"
            if fmt == "triton" else "")
    raise typer.BadParameter(f"--format {fmt} does not read {', '.join(stray)}: {where}{hint}")


def summary(manifest: dict[str, Any], out: str) -> str:
    parity = manifest["parity"]
    optimized = f", optimize {manifest['optimize_applied']}" if manifest["optimize_applied"] else ""
    lines = [f"wrote {out}: {manifest['format']} {manifest['precision']} (rung {manifest['rung']}{optimized})"]
    lines += _ladder_lines(manifest["ladder"])
    if manifest.get("query_prompt"):
        lines.append(f"  every query opens with the model's prompt {manifest['query_prompt']!r} (query_prompt)")
    if not parity.get("verified"):
        lines.append(f"  parity NOT verified: {parity.get('reason')}")
    else:
        numbers = [f"max|dlogit| {parity['max_abs_logit']:.2e}", f"kendall tau min {parity['kendall_tau_min']:.4f}",
                   f"top-1 agreement {parity['top1_agreement']:.3f}"]
        if "delta_ndcg@10" in parity:
            numbers.append(f"dNDCG@10 {parity['delta_ndcg@10']:.4f}")
        lines.append(f"  parity on {parity['num_pairs']} pairs ({parity['data']}): " + ", ".join(numbers))
    if manifest["parity_failed"]:
        lines.append("  WARNING: verification failed; written because of --allow-parity-failure")
    if manifest.get("tensorrt"):
        lines += _tensorrt_summary(manifest["tensorrt"])
    return "\n".join(lines)


def _ladder_lines(ladder: list[dict[str, Any]], label: str = "") -> list[str]:
    """One line per rung of a precision ladder that was skipped or failed verification, with why."""
    lines = []
    for entry in ladder:
        if entry.get("skipped"):
            lines.append(f"  {label}skipped {entry['rung']}: {entry['skipped']}")
        elif entry["failures"]:
            lines.append(f"  {label}{entry['rung']} failed: " + "; ".join(entry["failures"]))
    return lines


def _tensorrt_summary(section: dict[str, Any]) -> list[str]:
    *others, engine = section["engines"]  # the engine just built is the last
    shapes = ", ".join(f"{p['max_batch']}x{p['min_seq']}-{p['max_seq']}" for p in section["profiles"])
    lines = [f"  TensorRT engine {engine['file']}: rung {engine['rung']} (sm{engine['compute_capability']}, "
             f"TensorRT {engine['tensorrt_version']}, {engine['builder_api']}), profiles batch x seq {shapes}"]
    if others:
        lines.append("  the artifact also has engines for " + ", ".join(
            f"sm{e['compute_capability']} / TensorRT {e['tensorrt_version']}" for e in others))
    lines += _ladder_lines(engine["ladder"], "TensorRT ")
    parity = engine["parity"]
    lines.append(f"  TensorRT parity: max|dlogit| {parity['max_abs_logit']:.2e}"
                 + (f", dNDCG@10 {parity['delta_ndcg@10']:.4f}" if "delta_ndcg@10" in parity else ""))
    if engine["parity_failed"]:
        lines.append("  WARNING: the engine failed verification; kept because of --allow-parity-failure")
    return lines


def export_command(
    model: Annotated[str, typer.Argument(help="Checkpoint directory or hub id; with --format tensorrt also a fp32 "
                                               "ONNX artifact to add this GPU's engine to; with --format triton an "
                                               "exported artifact (ONNX, or one holding TensorRT engines), not a "
                                               "checkpoint.")],
    out: Annotated[Path, typer.Option("--out", help="Artifact directory to write (replaced atomically).")],
    fmt: Annotated[str, typer.Option("--format", help="onnx (CPU or GPU) | tensorrt (an engine, on a GPU) | triton "
                                                      "(a model repository of an ONNX artifact).")] = "onnx",
    precision: Annotated[str, typer.Option(
        "--precision", help="fp32 | int8 | int8-early-ffn-out-fp32 | int8-last-layer-fp32 | fp16 | bf16 | auto (the "
                            "fastest that passes verification: int8, int8-early-ffn-out-fp32, bf16, fp32).")] = "fp32",
    optimize: Annotated[str, typer.Option("--optimize", help="O0 | O1 | O2 | O3")] = "O2",
    verify_data: Annotated[Path | None, typer.Option(
        "--verify-data", help="Grouped JSONL (query, documents, labels) to verify parity on; built-in long "
                              "documents are checked too (logits and rankings).")] = None,
    allow_parity_failure: Annotated[bool, typer.Option(
        "--allow-parity-failure", help="Write the artifact even if verification fails (recorded).")] = False,
    triton_backend: Annotated[str, typer.Option(
        "--triton-backend",
        help="With --format triton: onnxruntime | tensorrt (the artifact's engine).")] = "onnxruntime",
    max_batch_size: Annotated[int, typer.Option(
        "--max-batch-size", help="tensorrt: largest profile batch; triton: max_batch_size.")] = 64,
    tensorrt_rungs: Annotated[str | None, typer.Option(
        "--tensorrt-rungs", help="tensorrt: the precision ladder, fastest first, comma-separated "
                                 "(default fp16,fp16-fp32-sensitive,bf16,fp32); the first rung that passes is kept.")
    ] = None,
    profiles: Annotated[int, typer.Option(
        "--profiles", help="tensorrt: optimization profiles (length buckets at the data's quantiles).")] = 3,
    triton_kind: Annotated[str, typer.Option(
        "--triton-kind", help="triton: instance kind, auto (KIND_CPU for int8 artifacts, else KIND_GPU) | KIND_GPU | "
                              "KIND_CPU.")] = "auto",
    triton_precision: Annotated[str, typer.Option(
        "--triton-precision", help="triton, onnxruntime on GPU: the TensorRT accelerator's precision, auto (the "
                                   "artifact's: fp16 only for a fp16 artifact) | fp16 | fp32.")] = "auto",
    triton_engine: Annotated[str, typer.Option(
        "--triton-engine", help="triton, --triton-backend tensorrt: which engine, auto (this machine's GPU and "
                                "TensorRT) | SM/VERSION of the serving GPU and Triton's TensorRT, e.g. 9.0/10.5.0.")
    ] = "auto",
    allow_untrained_head: Annotated[bool, typer.Option(
        "--allow-untrained-head", help="Export a base / embedding model whose classification head is untrained "
                                       "(it scores at random; recorded as head_initialized).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Export a reranker to ONNX (fp32/int8/fp16), bf16, a TensorRT engine or a Triton repository, verified first."""
    given = {"--precision": precision != "fp32", "--optimize": optimize != "O2", "--verify-data": verify_data,
             "--allow-parity-failure": allow_parity_failure, "--triton-backend": triton_backend != "onnxruntime",
             "--max-batch-size": max_batch_size != 64, "--tensorrt-rungs": tensorrt_rungs is not None,
             "--profiles": profiles != 3, "--triton-kind": triton_kind != "auto",
             "--triton-precision": triton_precision != "auto", "--allow-untrained-head": allow_untrained_head,
             "--triton-engine": triton_engine != "auto"}
    check_format_options(fmt, [name for name, value in given.items() if value])
    if precision == "bf16" and given["--optimize"]:
        raise typer.BadParameter(f"--optimize {optimize} rewrites an ONNX graph; --precision bf16 writes a torch "
                                 "artifact (bf16 weights), which has none: leave --optimize out")
    if max_batch_size < 1 or profiles < 1:
        raise typer.BadParameter(f"--max-batch-size and --profiles must be >= 1, got {max_batch_size} and {profiles}")
    try:
        _engine_target(triton_engine)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if triton_engine != "auto" and triton_backend != "tensorrt":
        raise typer.BadParameter("--triton-engine picks the TensorRT engine of --triton-backend tensorrt; the "
                                 f"{triton_backend} backend serves the ONNX model, which runs on any GPU")
    manifest = export_artifact(model, str(out), precision, optimize, None if verify_data is None else str(verify_data),
                               allow_parity_failure, fmt, triton_backend, max_batch_size, tensorrt_rungs, profiles,
                               triton_kind, triton_precision, allow_untrained_head, triton_engine)
    if fmt == "triton" and not as_json:
        typer.echo(f"wrote Triton model repository {out} ({triton_backend}); serve it with "
                   f"tritonserver --model-repository {out}")
        return
    if as_json:
        print_json(manifest)
    else:
        typer.echo(summary(manifest, str(out)))
