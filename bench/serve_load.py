"""Load test of ``fastrank serve`` on loopback: cross-request batching vs one request at a time, and overload.

    python -m bench serve --model runs/bench-artifacts/onnx-fp32-O3 [--requests 240] [--quick]

A bounded load generator (fixed number of requests, fixed concurrency, stops by itself) sends 20-document requests
built from WikiQA test (a query and 20 candidate sentences) to a server started as a subprocess, first with
cross-request batching, then with ``--no-batching`` (one request per batching step), at concurrency 1, 8 and 32.
Then a 4x overload run: concurrency 4x ``--max-queue``, no client retries; it counts answers by status, checks the
server is still healthy, samples its resident memory, and compares every 200 answer with ``Reranker`` scores
computed in this process. Records go to bench/results/serve.jsonl.

``--mixed``: one large request (``--big-docs`` documents, default 1,000) and, for as long as it is scored, 20-document
requests with 2 in flight (at most ``--requests``); each kind's latency, against each kind alone. With
``--reference-src DIR`` (a checkout of another commit, e.g. ``git worktree add /tmp/ref <rev>``) the same run is
repeated against a server started from DIR, side by side.
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


def build_big_request(n: int) -> dict[str, Any]:
    """One WikiQA test query with ``n`` documents: its candidates, then other queries' in file order."""
    groups = [json.loads(line) for line in (WIKIQA / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    pool = [d for g in groups for d in g["documents"]]
    return {"query": groups[0]["query"], "documents": (pool * (1 + n // len(pool)))[:n]}


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

    def __init__(self, model: str, threads: int, extra: list[str], src: Path = ROOT) -> None:
        """``src``: the source tree whose ``fastrank`` serves (python -m puts the working directory first)."""
        self.port = _free_port()
        cmd = [sys.executable, "-m", "fastrank.cli", "serve", str(Path(model).resolve()), "--port", str(self.port),
               "--threads", str(threads), *extra]
        self.proc = subprocess.Popen(cmd, cwd=src, env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
            "max_ms": round(float(lat.max()), 1),
            "peak_rss_mib": round(peak_rss, 1), "answers": answers}


async def _timed_post(client, url: str, request: dict[str, Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    response = await client.post(url + "/rerank", json=request)
    response.raise_for_status()
    return (time.perf_counter() - start) * 1000, response.json()["results"]


async def mixed(client, server: Server, big: dict[str, Any], small: list[dict[str, Any]], big_reference: np.ndarray,
                small_reference: list[np.ndarray]) -> list[dict[str, Any]]:
    """Each kind alone, then the large request with small ones sent (2 in flight) for as long as it is scored:
    latencies and the largest score difference from ``Reranker``."""
    alone = await load(client, server.url, small, 2, server.proc.pid)
    worst = check_answers(alone.pop("answers"), small, small_reference)
    big_alone, results = await _timed_post(client, server.url, big)
    worst = max(worst, _worst_diff(results, big_reference))
    large = asyncio.ensure_future(_timed_post(client, server.url, big))
    latencies, sent = [], iter(range(len(small)))

    async def sender() -> None:
        for i in sent:
            if large.done():
                return
            started = time.perf_counter()
            ms, results = await _timed_post(client, server.url, small[i])
            latencies.append((started, ms))
            nonlocal worst
            worst = max(worst, _worst_diff(results, small_reference[i]))

    big_start = time.perf_counter()
    await asyncio.sleep(0.05)  # the large request is being scored
    await asyncio.gather(sender(), sender())
    big_together, results = await large
    worst = max(worst, _worst_diff(results, big_reference))
    big_end = big_start + big_together / 1000  # small requests sent once it was answered ran alone: not counted
    latencies = [ms for started, ms in latencies if started < big_end]
    during = np.asarray(latencies or [float("nan")])
    out = [{"traffic": "each alone", "small_requests": alone["requests"], "small_p50_ms": alone["p50_ms"],
            "small_max_ms": round(float(alone["max_ms"]), 1), "big_ms": round(big_alone, 1)},
           {"traffic": "small requests while the large one is scored", "small_requests": len(latencies),
            "small_p50_ms": round(float(np.median(during)), 1), "small_max_ms": round(float(during.max()), 1),
            "big_ms": round(big_together, 1)}]
    for record in out:
        record.update(experiment="serve-mixed", big_docs=len(big["documents"]), max_abs_score_diff=worst)
    return out


def _worst_diff(results: list[dict[str, Any]], reference: np.ndarray) -> float:
    got = np.zeros(len(reference))
    for r in results:
        got[r["index"]] = r["relevance_score"]
    return float(np.abs(got - reference).max())


def check_answers(answers: dict[int, list[dict[str, Any]]], requests, reference: list[np.ndarray]) -> float:
    """Largest |score - reference| over every answered request (indices must map to the right documents)."""
    return max((_worst_diff(results, reference[i]) for i, results in answers.items()), default=0.0)


async def run_mixed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``mixed`` against a server from this tree, then (``--reference-src``) one from the reference tree."""
    import httpx

    from fastrank.reranker import Reranker

    small, big = build_requests(args.requests), build_big_request(args.big_docs)
    reranker = Reranker(args.model, num_threads=args.threads)
    small_reference = [reranker.predict([(r["query"], d) for d in r["documents"]]) for r in small]
    big_reference = reranker.predict([(big["query"], d) for d in big["documents"]])
    del reranker
    records = []
    trees = [("this tree", ROOT)] + ([("reference", Path(args.reference_src))] if args.reference_src else [])
    async with httpx.AsyncClient(timeout=600) as client:
        for label, src in trees:
            server = Server(args.model, args.threads, ["--max-queue", "1024"], src=src)
            try:
                await server.wait_ready(client)
                await load(client, server.url, small[:8], 2, server.proc.pid)  # warm-up
                for record in await mixed(client, server, big, small, big_reference, small_reference):
                    records.append({**record, "server": label, "src": _describe_tree(src)})
                    print(records[-1])
            finally:
                server.stop()
    return records


def _describe_tree(src: Path) -> str:
    """The commit checked out at ``src`` (plus "+changes" when its fastrank/ differs from it)."""
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=src, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--short", "fastrank") else "")


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
        modes = () if args.overload_only else (("cross-request batching", []),
                                               ("one request per step", ["--no-batching"]))
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
    parser.add_argument("--mixed", action="store_true",
                        help="Only the mixed run: small requests while one large request is scored.")
    parser.add_argument("--big-docs", type=int, help="Documents of the mixed run's large request (default 1000; "
                        "--quick: 200).")
    parser.add_argument("--reference-src", help="Mixed run: also serve from this source tree (another commit).")
    args = parser.parse_args(argv)
    require_shared_data()
    if args.quick:
        args.requests, args.concurrency = 40, [1, 8]
    args.big_docs = args.big_docs or (200 if args.quick else 1000)
    for record in asyncio.run(run_mixed(args) if args.mixed else run(args)):
        record["command"] = "python -m bench serve " + " ".join(argv or sys.argv[2:])
        record["model"] = args.model
        append_record("serve", record)
