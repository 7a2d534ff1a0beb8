"""``fastrank bench``: quality and speed of a model and its exported artifacts on your data, in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fastrank.cli.output import print_json


def sentence_transformers_row(model: str, threads: int) -> dict[str, Any]:
    """sentence-transformers' CrossEncoder on the same checkpoint, as a peer row (raw logits)."""
    import torch

    from fastrank.errors import require

    cross_encoder = require("sentence_transformers.cross_encoder", "dev", "the --peers row")
    torch.set_num_threads(threads)
    st = cross_encoder.CrossEncoder(model, device="cpu")
    identity = torch.nn.Identity()
    desc = {"library": "sentence-transformers", "backend": "torch", "provider": "cpu", "precision": "fp32"}
    return {"sentence-transformers torch fp32": (
        desc, lambda pairs: st.predict(pairs, batch_size=32, activation_fn=identity, show_progress_bar=False))}


def is_bench_records(path: Path) -> bool:
    """Whether ``path`` holds records an earlier ``fastrank bench --out`` appended (JSON objects with a "kind"):
    a rerun appends to it, while a model's or a data folder's own files are refused."""
    import json

    try:
        with path.open("rb") as f:
            record = json.loads(f.readline() or b"null")
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "kind" in record


def bench_command(
    model: Annotated[str, typer.Argument(help="Checkpoint directory (the PyTorch fp32 reference row).")],
    data: Annotated[Path, typer.Option("--data", help="Labelled candidate lists: grouped JSONL, CSV, TSV or "
                                                       "Parquet (query, documents, labels).")],
    artifact: Annotated[list[Path] | None, typer.Option(
        "--artifact", help="Exported artifact directory to bench (repeatable).")] = None,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", help="Backend on the checkpoint itself, NAME[:PRECISION] (repeatable): torch:bf16, "
                          "torch:bf16-mixed, torch-cuda:fp16, torch-cuda:bf16, torch-cuda:bf16-mixed.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small workloads from the data's first ~6,000 candidates, "
                                                       "one timed run: a smoke test.")] = False,
    threads: Annotated[int, typer.Option("--threads", help="Inference threads of every row.")] = 2,
    peers: Annotated[bool, typer.Option(
        "--peers", help="Add sentence-transformers' CrossEncoder on the same model (needs sentence-transformers).")
    ] = False,
    latency: Annotated[bool, typer.Option(" /--no-latency", help="Skip single-request latency (measured unless "
                                                             "given).", show_default=False)] = True,
    sweeps: Annotated[bool, typer.Option(" /--no-sweeps", help="Skip batch-size and sequence sweeps (run unless "
                                                           "given).", show_default=False)] = True,
    out: Annotated[Path | None, typer.Option("--out", help="Append JSON records to this JSONL file.")] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Write PNG plots into this directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """Measure MAP/MRR@10/NDCG@10, parity vs PyTorch fp32, pairs/s, latency p50/p95/p99 and sweeps."""
    from fastrank.benchmark import benchmark_model, markdown_table, quick_groups, write_jsonl
    from fastrank.data import iter_groups, read_groups, require_labels
    from fastrank.evaluation.beir import refuse_as_candidate_lists
    from fastrank.io import check_dir_path, check_output_file

    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    absent = [str(a) for a in artifact or [] if not a.exists()]
    if absent:
        raise typer.BadParameter(f"--artifact {', '.join(absent)}: no such directory")
    missing = [str(a) for a in artifact or [] if not (a / "fastrank.json").is_file()]
    if missing:
        raise typer.BadParameter(f"--artifact {', '.join(missing)}: not an exported artifact (no fastrank.json in "
                                 "it); write one with `fastrank export CHECKPOINT --out DIR`")
    if out is not None:  # before minutes of measuring, not after
        check_output_file(out, [data, model, *(artifact or [])], "--out", replaceable=is_bench_records)
        if out.suffix.lower() != ".jsonl":
            raise typer.BadParameter(f"--out {out}: the records are written as JSON lines; name the file *.jsonl")
    if plots is not None:
        check_dir_path(plots, "--plots")
    refuse_as_candidate_lists(data, "bench measures labelled candidate lists (grouped JSONL, CSV, TSV, Parquet); "
                                    "measure a BEIR folder with fastrank eval --data DIR --run FILE or "
                                    "--retrieve-top-k K")
    groups = quick_groups(iter_groups(str(data))) if quick else read_groups(str(data))  # --quick: the file's head
    require_labels(groups, "the bench's quality metrics")
    records = benchmark_model(model, groups, [str(a) for a in artifact or []], backends=backend or (),
                              extra_rows=sentence_transformers_row(model, threads) if peers else None,
                              quick=quick, threads=threads, latency=latency, sweeps=sweeps,
                              progress=lambda text: typer.echo(f"bench: {text}", err=True))
    if out is not None:
        write_jsonl(out, records)
    if plots is not None:
        from fastrank.plots import plot_records

        for path in plot_records(records, plots):
            typer.echo(f"wrote {path}", err=True)
    if as_json:
        print_json(records)
    else:
        typer.echo(markdown_table(records))
