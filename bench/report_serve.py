"""The RESULTS.md section of the latest ``python -m bench serve`` run (loopback load test of ``fastrank serve``)."""

from __future__ import annotations

from typing import Any


def section(records: list[dict[str, Any]]) -> str:
    if not records:
        return ""
    last = records[-1]["time"]
    run = [r for r in records if r["time"][:13] == last[:13]]  # the records of the latest run (same hour)
    load = [r for r in run if r["experiment"] == "serve-load"]
    over = [r for r in run if r["experiment"] == "serve-overload"][-1:]  # the latest overload run
    lines = [
        "## HTTP serving: cross-request batching and overload (loopback)",
        "",
        f"Command: `{run[0]['command']}` (model `{run[0]['model']}`, {run[0]['machine']['cores']} cores shared by "
        "the server and the load generator). Each request: one WikiQA test query with 20 documents. The load "
        "generator sends a fixed number of requests with a fixed number in flight and stops by itself; latency is "
        "per answered request; every answer is checked against `Reranker` scores computed in the bench process.",
        "",
        "| mode | concurrency | requests | answered/s | pairs/s | p50 ms | p99 ms | statuses | max abs score diff |"
        " peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in load + over:
        mode = r["mode"] + (f" (overload, max_queue {r['max_queue']})" if r["experiment"] == "serve-overload" else "")
        lines.append(f"| {mode} | {r['concurrency']} | {r['requests']} | {r['requests_per_s']} | {r['pairs_per_s']} | "
                     f"{r['p50_ms']} | {r['p99_ms']} | {r['statuses']} | {r['max_abs_score_diff']:.1e} | "
                     f"{r['peak_rss_mib']} |")
    by = {(r["mode"], r["concurrency"]): r["requests_per_s"] for r in load}
    gains = [f"concurrency {c}: {by[('cross-request batching', c)] / by[('one request per step', c)]:.2f}x"
             for c in sorted({c for _, c in by}) if ('one request per step', c) in by
             and ('cross-request batching', c) in by]
    lines += ["", "Gain of cross-request batching over one request per step (answered requests/s): "
              + ", ".join(gains) + "."]
    for r in over:
        lines.append(f"Overload: {r['concurrency']} in flight against max_queue {r['max_queue']}: statuses "
                     f"{r['statuses']}, /health after the run {r['health_after']}, server RSS {r['idle_rss_mib']} MiB "
                     f"idle -> peak {r['peak_rss_mib']} MiB, rejected counter {r['rejected_metric']}, largest score "
                     f"difference of answered requests {r['max_abs_score_diff']:.1e}.")
    return "\n".join(lines) + "\n"
