"""Load test of ``fastrank serve`` on loopback: cross-request batching vs one request at a time, and overload.

    python -m bench serve --model runs/bench-artifacts/onnx-fp32-O3 [--requests 240] [--quick]

A bounded load generator (fixed number of requests, fixed concurrency, stops by itself) sends 20-document requests
built from WikiQA test (a query and 20 candidate sentences) to a server started as a subprocess, first with
cross-request batching, then with ``--no-batching`` (one request per batching step), at concurrency 1, 8 and 32.
Then a 4x overload run: concurrency 4x ``--max-queue``, no client retries; it counts answers by status, checks the
server is still healthy, samples its resident memory, and compares every 200 answer with ``Reranker`` scores
computed in this process. Records go to bench/results/serve.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, WIKIQA, append_record, require_shared_data

DOCS_PER_REQUEST = 20


def build_requests(n: int) -> list[dict[str, Any]]:
    """``n`` requests: each WikiQA test query with 20 documents (its candidates, then other queries' to fill)."""
    groups = [json.loads(line) for line in (WIKIQA / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    pool = [d for g in groups for d in g["documents"]]
    out = []
    for i in range(n):
        g = groups[i % len(groups)]
        docs = list(g["documents"][:DOCS_PER_REQUEST])
        j = i * 7
        while len(docs) < DOCS_PER_REQUEST:
            docs.append(pool[j % len(pool)])
            j += 1
        out.append({"query": g["query"], "documents": docs})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``fastrank serve`` in a subprocess, waited for until /health answers."""

    def __init__(self, model: str, threads: int, extra: list[str]) -> None:
        self.port = _free_port()
        cmd = [sys.executable, "-m", "fastrank.cli", "serve", model, "--port", str(self.port),
               "--threads", str(threads), *extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.url = f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, client) -> None:
        for _ in range(600):
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}")
            try:
                if (await client.get(self.url + "/health")).status_code == 200:
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("server did not become healthy in 60 s")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


async def load(client, url: str, requests: list[dict[str, Any]], concurrency: int, pid: int) -> dict[str, Any]:
    """Send every request once with ``concurrency`` in flight; latency, status counts, answers, peak RSS."""
    latencies, statuses, answers = [], {}, {}
    next_index = 0
    peak_rss = _rss_mib(pid)

    async def worker() -> None:
        nonlocal next_index, peak_rss
        while next_index < len(requests):
            i = next_index
            next_index += 1
            start = time.perf_counter()
            response = await client.post(url + "/rerank", json=requests[i])
            if response.status_code == 200:
                latencies.append(time.perf_counter() - start)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                answers[i] = response.json()["results"]
            if i % 20 == 0:
                peak_rss = max(peak_rss, _rss_mib(pid))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    lat = np.asarray(latencies or [float("nan")]) * 1000  # latency of answered (200) requests
    return {"concurrency": concurrency, "requests": len(requests), "wall_s": round(wall, 2),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "requests_per_s": round(statuses.get(200, 0) / wall, 2),
            "pairs_per_s": round(statuses.get(200, 0) * DOCS_PER_REQUEST / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "peak_rss_mib": round(peak_rss, 1), "answers": answers}


def check_answers(answers: dict[int, list[dict[str, Any]]], requests, reference: list[np.ndarray]) -> float:
    """Largest |score - reference| over every answered request (indices must map to the right documents)."""
    worst = 0.0
    for i, results in answers.items():
        got = np.zeros(DOCS_PER_REQUEST)
        for r in results:
            got[r["index"]] = r["relevance_score"]
        worst = max(worst, float(np.abs(got - reference[i]).max()))
    return worst


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import httpx

    from fastrank.reranker import Reranker

    requests = build_requests(args.requests)
    many = build_requests(args.requests * 2)  # the overload run's requests (the first ones are ``requests``)
    reranker = Reranker(args.model, num_threads=args.threads)
    reference = [reranker.predict([(r["query"], d) for d in r["documents"]]) for r in many]
    del reranker
    records = []
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        modes = () if args.overload_only else (("cross-request batching", []), ("one request per step", ["--no-batching"]))
        for mode, extra in modes:
            server = Server(args.model, args.threads, [*extra, "--max-queue", "1024"])
            try:
                await server.wait_ready(client)
                await load(client, server.url, requests[:16], 4, server.proc.pid)  # warm-up
                for concurrency in args.concurrency:
                    result = await load(client, server.url, requests, concurrency, server.proc.pid)
                    result["max_abs_score_diff"] = check_answers(result.pop("answers"), requests, reference)
                    records.append({"experiment": "serve-load", "mode": mode, **result})
                    print({k: v for k, v in records[-1].items()})
            finally:
                server.stop()
        queue = args.overload_queue
        server = Server(args.model, args.threads, ["--max-queue", str(queue)])
        try:
            await server.wait_ready(client)
            idle_rss = _rss_mib(server.proc.pid)
            result = await load(client, server.url, many, 4 * queue, server.proc.pid)
            result["max_abs_score_diff"] = check_answers(result.pop("answers"), many, reference)
            health = (await client.get(server.url + "/health")).status_code
            metrics = (await client.get(server.url + "/metrics")).text
        finally:
            exit_code = server.stop()
        rejected = [line for line in metrics.splitlines() if line.startswith("fastrank_rejected_total")]
        records.append({"experiment": "serve-overload", "mode": "cross-request batching", "max_queue": queue,
                        "idle_rss_mib": round(idle_rss, 1), "health_after": health, "server_exit_code": exit_code,
                        "rejected_metric": rejected[0].split()[-1] if rejected else None, **result})
        print(records[-1])
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "runs" / "bench-artifacts" / "onnx-fp32-O3"))
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--overload-queue", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="40 requests, concurrency 1 and 8: a smoke run.")
    parser.add_argument("--overload-only", action="store_true", help="Only the 4x overload run.")
    args = parser.parse_args(argv)
    require_shared_data()
    if args.quick:
        args.requests, args.concurrency = 40, [1, 8]
    for record in asyncio.run(run(args)):
        record["command"] = "python -m bench serve " + " ".join(argv or sys.argv[2:])
        record["model"] = args.model
        append_record("serve", record)
