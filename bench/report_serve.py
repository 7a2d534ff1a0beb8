"""The RESULTS.md section of the latest ``python -m bench serve`` run (loopback load test of ``fastrank serve``)."""

from __future__ import annotations

from typing import Any


def _latest_run(records: list[dict[str, Any]], experiments: tuple[str, ...]) -> list[dict[str, Any]]:
    """The records of ``experiments`` from their latest run (the same hour as the last of them)."""
    mine = [r for r in records if r["experiment"] in experiments]
    return [r for r in mine if r["time"][:13] == mine[-1]["time"][:13]] if mine else []


def section(records: list[dict[str, Any]]) -> str:
    run = _latest_run(records, ("serve-load", "serve-overload"))
    if not run:
        return _mixed_section(_latest_run(records, ("serve-mixed",)))
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
    return "\n".join(lines) + "\n" + _mixed_section(_latest_run(records, ("serve-mixed",)))


def _mixed_section(run: list[dict[str, Any]]) -> str:
    """Small requests while one large request is scored, from this tree and the reference tree side by side."""
    if not run:
        return ""
    lines = [
        "",
        "### A large request among small ones",
        "",
        f"Command: `{run[0]['command']}` (model `{run[0]['model']}`). One request of {run[0]['big_docs']} documents "
        "(a WikiQA test query with the test file's sentences) and, for as long as it is scored, 20-document requests "
        "with 2 in flight; before that, each kind alone. *reference* = a server started from another commit's "
        "checkout in the same run. Every answer is checked against `Reranker` scores computed in the bench process.",
        "",
        "| server | commit | traffic | small requests | small p50 ms | small max ms | large request ms |"
        " max abs score diff |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in run:
        lines.append(f"| {r['server']} | {r['src']} | {r['traffic']} | {r['small_requests']} | {r['small_p50_ms']} | "
                     f"{r['small_max_ms']} | {r['big_ms']} | {r['max_abs_score_diff']:.1e} |")
    return "\n".join(lines) + "\n"
