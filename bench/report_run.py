"""The RESULTS.md section of the latest ``python -m bench run``: speed, latency, quality, parity, sweeps, plots."""

from __future__ import annotations

from typing import Any

from bench.peers import PROCESS as PEER_PROCESS
from fastrank.benchmark import markdown_table
from fastrank.timing import MIN_BOOTSTRAP_RUNS, interval_kind

INTERVAL_LABELS = {"range": "range of runs", "bootstrap95": "bootstrap 95% CI"}


def _latest(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not records:
        return []
    run_id = records[-1]["run_id"]
    return [r for r in records if r.get("run_id") == run_id]


def _ratio(records, workload: str, row: str, peer: str) -> float | None:
    speed = {r["row"]: r["timing"]["items_per_s"] for r in records
             if r.get("kind") == "throughput" and r["workload"] == workload}
    return speed[row] / speed[peer] if row in speed and peer in speed else None


def headline(records: list[dict[str, Any]]) -> list[str]:
    """Ratios of fastrank rows against sentence-transformers rows on each workload."""
    lines = []
    peers = ("sentence-transformers torch fp32", "sentence-transformers onnx fp32", "sentence-transformers onnx int8")
    ours = sorted({r["row"] for r in records if r.get("kind") == "throughput" and r["row"].startswith("fastrank")})
    for workload in ("short", "long"):
        for row in ours:
            cells = []
            for peer in peers:
                ratio = _ratio(records, workload, row, peer)
                if ratio is not None:
                    cells.append(f"{ratio:.2f}x {peer.replace('sentence-transformers', 'ST')}")
            if cells:
                lines.append(f"- {workload}: **{row}** = " + ", ".join(cells))
    return lines


def _from_peer_venv(record: dict[str, Any]) -> bool:
    """Whether bench/peers.py measured the row in the peer venv: its records name that process in their
    environment; older ones did not, and there its rows are the non-fastrank onnxruntime ones."""
    env = record.get("environment", {})
    if "process" in env:
        return env["process"] == PEER_PROCESS
    return record.get("library") != "fastrank" and record.get("backend") == "onnxruntime"


def peer_versions(records: list[dict[str, Any]]) -> str:
    """The peer-venv rows' library versions, told apart from this process's (those rows ran under other ones)."""
    peer = [r for r in records if r.get("kind") == "throughput" and _from_peer_venv(r)]
    if not peer:
        return ""
    rows = ", ".join(dict.fromkeys(r["row"] for r in peer))
    own = [r["environment"]["versions"] for r in peer if r.get("environment", {}).get("process") == PEER_PROCESS]
    if own:
        return f" Peer venv (bench/peers.py in .venv-peers; {rows}): versions {own[0]}."
    return (f" Peer venv (bench/peers.py in .venv-peers; {rows}): versions not recorded by this run, not the ones "
            "above (that venv pins sentence-transformers>=5,<6 and transformers<4.58).")


def _interval_kind(timing: dict[str, Any]) -> str:
    """What a timing's ``items_per_s_ci95`` holds (records from before ``interval_kind``: by their run count)."""
    return timing.get("interval_kind") or interval_kind(timing["runs"])


def interval_table(tp: list[dict[str, Any]]) -> list[str]:
    """Throughput with its interval, named for what it is: the range of the runs below MIN_BOOTSTRAP_RUNS runs."""
    kinds = {_interval_kind(r["timing"]) for r in tp}
    header = INTERVAL_LABELS[next(iter(kinds))] if len(kinds) == 1 else "interval"
    lines = [f"Throughput with its interval and spread (runs): *range of runs* = the slowest to the fastest timed "
             f"run's pairs/s, given for rows with fewer than {MIN_BOOTSTRAP_RUNS} runs (a bootstrap 95% interval of "
             "their median would be that range anyway); from that many runs on, a bootstrap 95% interval of the "
             "median run's pairs/s.", "",
             f"| workload | row | pairs/s | {header} | runs | min s | median s |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for r in tp:
        t = r["timing"]
        lo, hi = t["items_per_s_ci95"]
        kind = "" if len(kinds) == 1 else f" ({INTERVAL_LABELS[_interval_kind(t)]})"
        lines.append(f"| {r['workload']} | {r['row']} | {t['items_per_s']:.1f} | {lo:.1f}-{hi:.1f}{kind} | "
                     f"{t['runs']} | {t['min_s']:.2f} | {t['median_s']:.2f} |")
    return lines


def section(all_records: list[dict[str, Any]]) -> str:
    records = _latest(all_records)
    if not records:
        return ""
    first = records[0]
    env = first.get("environment", {})
    rates = first.get("matmul_gflops", {})
    tp = [r for r in records if r.get("kind") == "throughput"]
    lines = [
        "## Inference: every backend, precision and peer in one run",
        "",
        f"Command: `{first['command']}` ({first['run_seconds']} s in all, run {first['run_id']}). Model "
        f"`{first['model']}`, data `{first['data']}`; {env.get('threads')} threads on {env.get('cpu')}; versions "
        f"in this process {env.get('versions')}." + peer_versions(records),
        "",
        "Workloads: *short* = every (query, candidate sentence) pair; *long* = (query, ~180-word passage) pairs, each "
        "passage a candidate followed by the next sentences of its article. Pairs/s is end to end (tokenization "
        "included): median of the timed runs (see *runs* below) after a warm-up on every tenth pair; the in-process "
        "rows take their timed runs in turn (round-robin, since 2026-11-29 15:50), the peer-venv rows likewise among "
        "themselves; fastrank rows use their defaults (at most 2048 padded tokens per batch; batch 32 on one "
        "onnxruntime session, or for int8 artifacts since 2026-11-29 17:00 batch 8 on 2 one-thread sessions side by "
        "side), peers batch 32. Latency = one request of N documents (the first test query paired with the first N "
        "documents of the short workload: its own candidates, then the next queries' candidates, cycling if there "
        "are fewer), p50/p99 over requests repeated for about 2 s (at least 3); 1000 documents only for each "
        "library's fastest row, picked separately in this process and in the peer venv, so a library with rows in "
        "both (sentence-transformers) gets one such row in each. Rows run one after another, and this is a shared "
        "VM: between two full runs an hour apart sentence-transformers torch moved from 141.3 to 121.0 pairs/s and "
        "the measured fp32 matmul rate from 192.6 to 157.5 GFLOP/s (bench/results/run.jsonl), so read single ratios "
        "with ~15% error; changes to fastrank itself are measured interleaved in one process (next section). Parity "
        "is against fastrank torch fp32 on the same "
        "pairs (tau min = worst per-query Kendall tau; top-1 = share of queries with the same best document). % matmul "
        "rate = achieved GFLOP/s over this machine's measured 1024^3 torch matmul rate for the row's precision (not "
        "a hardware peak: onnxruntime's kernels can beat it, so it can pass 100) "
        f"({rates} GFLOP/s; int8 = onnxruntime MatMulInteger GOP/s). GFLOP per pair: "
        + ", ".join(f"{r['workload']} {r['gflop_per_pair']}" for r in tp if r["row"] == "fastrank torch fp32") + ".",
        "",
        markdown_table(records),
        "",
    ]
    lines += interval_table(tp)
    lines += ["", "Single-request latency (ms) p50 / p95 / p99 (runs):", "",
              "| row | 10 docs | 100 docs | 1000 docs |", "| --- | ---: | ---: | ---: |"]
    for r in tp:
        if not r.get("latency"):
            continue
        cells = []
        for n in ("10", "100", "1000"):
            t = r["latency"].get(n)
            cells.append(f"{t['p50_s'] * 1e3:.0f} / {t['p95_s'] * 1e3:.0f} / {t['p99_s'] * 1e3:.0f} ({t['runs']})"
                         if t else "-")
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    batch = [r for r in records if r.get("kind") == "sweep-batch"]
    if batch:
        lines += ["", f"Batch size / token budget sweep (short workload, first {batch[0]['timing']['items']:,} pairs):", "",
                  "| row | batch size | max tokens | pairs/s |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {r['row']} | {r['batch_size']} | {r['max_tokens'] or '-'} | {r['timing']['items_per_s']:.1f} |"
                  for r in batch]
    seq = [r for r in records if r.get("kind") == "sweep-seq"]
    if seq:
        lines += ["", "Sequence-length sweep (128 long-workload pairs, documents cut to N words):", "",
                  "| row | document words | mean tokens | pairs/s |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {r['row']} | {r['document_words']} | {r['mean_tokens']} | {r['timing']['items_per_s']:.1f} |"
                  for r in seq]
    lines += ["", "Plots: ![throughput vs batch](plots/throughput_vs_batch.png) "
              "![throughput vs sequence](plots/throughput_vs_sequence.png) "
              "![latency vs documents](plots/latency_vs_documents.png) ![quality vs speed](plots/quality_vs_speed.png)",
              "", "Headline ratios (pairs/s, same run):", ""] + headline(records)
    return "\n".join(lines) + "\n"
