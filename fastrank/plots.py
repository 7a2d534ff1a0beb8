"""PNG plots of benchmark records (``fastrank.benchmark``): throughput vs batch size and vs sequence length,
latency vs documents per request, quality vs speed. Needs matplotlib (``pip install matplotlib``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastrank.errors import require


def plot_records(records: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write the plots that ``records`` have data for into ``out_dir``; returns the files written."""
    require("matplotlib", "bench", "benchmark plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)

    batch = defaultdict(list)
    for r in records:
        if r.get("kind") == "sweep-batch":
            label = str(r["batch_size"]) + (f"\n≤{r['max_tokens']} tok" if r.get("max_tokens") else "")
            batch[r["row"]].append((label, r["timing"]["items_per_s"]))
    if batch:
        fig, ax = plt.subplots(figsize=(7, 4))
        for row, points in batch.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=row)
        ax.set(xlabel="batch size (pairs; token budget)", ylabel="pairs/s", title="Throughput vs batch size (short)")
        ax.legend(fontsize=8)
        save(fig, "throughput_vs_batch.png")

    seq = defaultdict(list)
    for r in records:
        if r.get("kind") == "sweep-seq":
            seq[r["row"]].append((r["mean_tokens"], r["timing"]["items_per_s"]))
    if seq:
        fig, ax = plt.subplots(figsize=(7, 4))
        for row, points in seq.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=row)
        ax.set(xlabel="mean tokens per pair", ylabel="pairs/s", xscale="log", yscale="log",
               title="Throughput vs sequence length")
        ax.legend(fontsize=8)
        save(fig, "throughput_vs_sequence.png")

    latency = [r for r in records if r.get("kind") == "throughput" and r.get("latency")]
    if latency:
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in latency:
            sizes = sorted(r["latency"], key=int)
            p50 = [r["latency"][n]["p50_s"] * 1000 for n in sizes]
            p99 = [r["latency"][n]["p99_s"] * 1000 for n in sizes]
            line = ax.plot([int(n) for n in sizes], p50, marker="o", label=r["row"])[0]
            ax.fill_between([int(n) for n in sizes], p50, p99, color=line.get_color(), alpha=0.15)
        ax.set(xlabel="documents per request", ylabel="latency ms (p50, band to p99)", xscale="log", yscale="log",
               title="Single-request latency")
        ax.legend(fontsize=8)
        save(fig, "latency_vs_documents.png")

    # a row whose logits were not finite has no quality (None): it has no place on a quality axis
    points = [r for r in records if r.get("kind") == "throughput" and r["workload"] == "short" and r.get("quality")]
    if points:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in points:
            ax.scatter(r["timing"]["items_per_s"], r["quality"]["map"])
            ax.annotate(f"{r['row']}", (r["timing"]["items_per_s"], r["quality"]["map"]), fontsize=7,
                        xytext=(4, 2), textcoords="offset points")
        ax.set(xlabel="pairs/s (short workload)", ylabel="MAP", title="Quality vs speed per backend/precision")
        save(fig, "quality_vs_speed.png")
    return written
