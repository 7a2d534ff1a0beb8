"""The rerank service: cross-request batching returns each request its own scores, the queue is bounded, the HTTP
API answers the Cohere/Jina/TEI request shapes with scores equal to ``Reranker.rerank``, limits name themselves,
and /metrics is valid Prometheus text."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastrank.reranker import Reranker  # noqa: E402
from fastrank.serve.engine import BatchingConfig, BatchingEngine, EngineStopped, QueueFull  # noqa: E402

WORDS = "the cross encoder reads query and document together so it ranks passages better than embeddings".split()


def _docs(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]


@pytest.fixture(scope="module")
def reranker(tiny_model_dir) -> Reranker:
    return Reranker(tiny_model_dir, backend="torch")


class _Slow:
    """A reranker whose inference blocks until released, to hold jobs in the queue."""

    def __init__(self, inner: Reranker) -> None:
        self.inner, self.release = inner, threading.Event()
        self.num_labels, self.encode, self.reduce = inner.num_labels, inner.encode, inner.reduce
        self.backend, self.activation, self.warmup = inner.backend, inner.activation, inner.warmup
        self.describe = inner.describe
        self.calls: list[int] = []
        self.entered = threading.Event()  # set once a batch is on the inference thread

    def run(self, encoded, max_tokens=None):
        self.entered.set()
        self.release.wait(10)
        self.calls.append(len(encoded))
        return self.inner.run(encoded, max_tokens)


class _SlowTokenizer:
    """A reranker whose tokenization of a request with the query "slow" blocks until ``release`` is set (5 s at most:
    on a blocked event loop nothing could set it), counting each start in ``entered`` and each give-up in
    ``waited_out``; inference runs freely."""

    def __init__(self, inner: Reranker) -> None:
        self.inner, self.release, self.entered = inner, threading.Event(), threading.Semaphore(0)
        self.num_labels, self.run, self.reduce = inner.num_labels, inner.run, inner.reduce
        self.backend, self.activation, self.warmup = inner.backend, inner.activation, inner.warmup
        self.describe = inner.describe
        self.waited_out = 0

    def encode(self, pairs):
        pairs = list(pairs)
        if pairs and pairs[0][0] == "slow":
            self.entered.release()
            if not self.release.wait(5):
                self.waited_out += 1
        return self.inner.encode(pairs)


async def _until(condition, timeout: float = 5.0) -> None:
    """Yield to the event loop until ``condition()`` holds (the test fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the engine never reached the expected state"
        await asyncio.sleep(0.005)


def test_concurrent_requests_share_batches_and_get_their_own_scores(reranker):
    requests = [("query %d about ranking" % i, _docs(3 + i % 5, i)) for i in range(12)]

    async def main(config):
        engine = BatchingEngine(reranker, config)
        await engine.start()
        out = await asyncio.gather(*(engine.submit([(q, d) for d in docs]) for q, docs in requests))
        await engine.stop()
        return out, engine.metrics

    batched, metrics = asyncio.run(main(BatchingConfig(max_wait_ms=50, max_batch_tokens=1 << 16)))
    for (q, docs), (logits, tokens) in zip(requests, batched):
        np.testing.assert_allclose(logits, reranker.logits([(q, d) for d in docs]), atol=1e-5)
        assert tokens == int(reranker.encode([(q, d) for d in docs])[0].lengths.sum())
    steps = metrics._hists["fastrank_batch_requests"]
    assert sum(steps.counts) < len(requests)  # requests were merged into fewer steps
    assert steps.sum == len(requests)

    single, metrics = asyncio.run(main(BatchingConfig(max_wait_ms=50, max_batch_requests=1)))
    assert sum(metrics._hists["fastrank_batch_requests"].counts) == len(requests)
    for (logits, _), (ref, _) in zip(single, batched):
        np.testing.assert_allclose(logits, ref, atol=1e-5)


def test_token_budget_splits_steps(reranker):
    async def main():
        engine = BatchingEngine(reranker, BatchingConfig(max_wait_ms=50, max_batch_tokens=32))
        await engine.start()
        await asyncio.gather(*(engine.submit([("q", "a b c d")] * 2) for _ in range(6)))
        await engine.stop()
        return engine.metrics._hists["fastrank_batch_tokens"]

    tokens = asyncio.run(main())
    assert sum(tokens.counts) == 3 and tokens.sum == 6 * 2 * 8  # a pair pads to 8 tokens: 2 requests a step


def test_plan_pieces_cuts_a_large_request_longest_rows_first():
    from fastrank.serve.engine import plan_pieces, row_tokens

    lengths = np.array([3, 17, 9, 40, 1, 25, 300, 16])
    fits = plan_pieces(lengths, 1000)
    assert len(fits) == 1 and fits[0].tolist() == list(range(8))  # a request that fits keeps its order
    pieces = plan_pieces(lengths, 64)
    assert [p.tolist() for p in pieces] == [[6], [3], [5, 1], [7, 2, 0, 4]]  # padded: 304 | 40 | 2x32 | 4x16
    for piece in pieces:  # rows x longest within the budget (one forward pass each); a row above it goes alone
        assert len(piece) == 1 or len(piece) * row_tokens(lengths[piece]).max() <= 64


@pytest.mark.parametrize("sessions, budget", [(1, 2048), (1, 8192), (2, 8192)])
def test_a_large_request_runs_as_the_forward_passes_of_a_whole_run(tiny_model_dir, o1_artifact, sessions, budget):
    """Its pieces are whole forward passes of the reranker's own plan (its batch size, its padding), so scoring a
    large request a step at a time makes no more passes than scoring it at once. Pieces cut by summed tokens, and then
    by rows x longest alone, left Reranker.run a small extra batch almost every step (1,000 rows: 49 -> 59 passes)."""
    reranker = Reranker(o1_artifact, sessions=2) if sessions > 1 else Reranker(tiny_model_dir, backend="torch")
    rng = np.random.default_rng(0)
    pairs = [("a query about ranking", " ".join(rng.choice(WORDS, size=int(rng.integers(1, 60)))))
             for _ in range(1000)]
    passes = []
    scorers = reranker.backend.scorers

    def counting():
        return [lambda batch, run=run: passes.append(len(batch["input_ids"])) or run(batch) for run in scorers()]

    reranker.backend.scorers = counting
    whole = reranker.run(reranker.encode(pairs)[0], budget)
    at_once = len(passes)

    async def main():
        engine = BatchingEngine(reranker, BatchingConfig(max_wait_ms=0, max_batch_tokens=budget))
        await engine.start()
        out = await engine.submit(pairs)
        await engine.stop()
        return out, engine.metrics._hists["fastrank_batch_requests"], engine.metrics._hists["fastrank_queue_seconds"]

    passes.clear()
    (logits, _), steps, waits = asyncio.run(main())
    assert sum(steps.counts) > 1 and sum(waits.counts) == 1  # a step at a time; its wait counted before the first
    assert len(passes) == at_once
    np.testing.assert_allclose(logits, whole, atol=1e-5)


def test_rows_of_a_failed_step_are_not_counted_as_scored(reranker):
    class Failing:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0
            self.num_labels, self.encode, self.reduce = inner.num_labels, inner.encode, inner.reduce

        def run(self, encoded, max_tokens=None):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("device lost")
            return self.inner.run(encoded, max_tokens)

    async def main():
        engine = BatchingEngine(Failing(reranker), BatchingConfig(max_wait_ms=0))
        await engine.start()
        with pytest.raises(RuntimeError, match="device lost"):
            await engine.submit([("q", "a"), ("q", "b"), ("q", "c")])
        await engine.submit([("q", "d")])
        await engine.stop()
        return engine.metrics.counter("fastrank_pairs_total"), engine.pending

    assert asyncio.run(main()) == (1, 0)


def test_a_large_request_runs_a_step_at_a_time_and_lets_small_ones_through(reranker):
    """A request above the step budget is cut into step-sized pieces, and a request that arrives while one piece runs
    is scored in the next step: it used to wait for the whole large request. Every row comes back to its place."""
    slow = _Slow(reranker)
    big = [("big query", d) for d in _docs(40, 3)]
    cost = int(sum(-(-n // 8) * 8 for n in reranker.encode(big)[0].lengths))
    marker = reranker.encode([("q", "small")])[0].input_ids[0].tolist()
    steps_with_small = []
    inner_run = slow.run

    def run(encoded, max_tokens=None):
        steps_with_small.append(any(ids.tolist() == marker for ids in encoded.input_ids))
        return inner_run(encoded, max_tokens)

    slow.run = run

    async def main():
        engine = BatchingEngine(slow, BatchingConfig(max_wait_ms=0, max_batch_tokens=cost // 4))
        await engine.start()
        large = asyncio.ensure_future(engine.submit(big))
        await asyncio.to_thread(slow.entered.wait, 5)  # the first piece is on the inference thread
        small = asyncio.ensure_future(engine.submit([("q", "small")]))
        await _until(lambda: len(engine._jobs) == 1)
        slow.release.set()
        results = await asyncio.gather(large, small)
        await engine.stop()
        return results, engine.pending

    ((large_logits, tokens), (small_logits, _)), pending = asyncio.run(main())
    assert steps_with_small.index(True) == 1 and len(steps_with_small) >= 5  # step 2 of the large request's 4+
    assert sum(slow.calls) == 41 and pending == 0
    np.testing.assert_allclose(large_logits, reranker.logits(big), atol=1e-5)
    np.testing.assert_allclose(small_logits, reranker.logits([("q", "small")]), atol=1e-5)
    assert tokens == int(reranker.encode(big)[0].lengths.sum())


def test_a_large_request_cancelled_part_way_scores_no_more_pieces(reranker):
    slow = _Slow(reranker)
    big = [("big query", d) for d in _docs(40, 4)]

    async def main():
        engine = BatchingEngine(slow, BatchingConfig(max_wait_ms=0, max_batch_tokens=64))
        await engine.start()
        large = asyncio.ensure_future(engine.submit(big))
        await asyncio.to_thread(slow.entered.wait, 5)
        large.cancel()
        slow.release.set()
        after = await engine.submit([("q", "after")])
        await engine.stop()
        return after, engine.pending, engine.metrics.counter("fastrank_cancelled_total")

    (after, _), pending, cancelled = asyncio.run(main())
    assert len(slow.calls) == 2 and slow.calls[1] == 1  # one piece of the large request, then the next request
    assert (pending, cancelled) == (0, 1)
    np.testing.assert_allclose(after, reranker.logits([("q", "after")]), atol=1e-5)


def test_a_request_cancelled_while_scored_leaves_its_batch_mates_their_rows(reranker):
    slow = _Slow(reranker)
    first, second = [("q", "first a"), ("q", "first b")], [("q", "second c d"), ("q", "second e f g")]

    async def main():
        engine = BatchingEngine(slow, BatchingConfig(max_wait_ms=300))
        await engine.start()
        a = asyncio.ensure_future(engine.submit(first))
        b = asyncio.ensure_future(engine.submit(second))
        await asyncio.to_thread(slow.entered.wait, 5)  # both are in the step on the inference thread
        a.cancel()
        slow.release.set()
        (logits, _), = await asyncio.gather(b)
        await engine.stop()
        return logits, engine.pending

    logits, pending = asyncio.run(main())
    assert slow.calls == [4] and pending == 0
    np.testing.assert_allclose(logits, reranker.logits(second), atol=1e-5)


def test_stop_without_drain_fails_a_large_request_part_way(reranker):
    slow = _Slow(reranker)

    async def main():
        engine = BatchingEngine(slow, BatchingConfig(max_wait_ms=0, max_batch_tokens=64))
        await engine.start()
        large = asyncio.ensure_future(engine.submit([("big query", d) for d in _docs(40, 5)]))
        await asyncio.to_thread(slow.entered.wait, 5)
        stopping = asyncio.ensure_future(engine.stop(drain=False))
        await asyncio.sleep(0.01)
        slow.release.set()
        await stopping
        with pytest.raises(EngineStopped):
            await large
        return engine.pending

    assert asyncio.run(main()) == 0 and len(slow.calls) == 1


def test_queue_is_bounded_and_cancelled_jobs_are_dropped(reranker):
    slow = _Slow(reranker)

    async def main():
        engine = BatchingEngine(slow, BatchingConfig(max_wait_ms=0, max_queue=3, max_batch_requests=1))
        await engine.start()
        first = asyncio.ensure_future(engine.submit([("q", "running")]))
        await asyncio.sleep(0.05)  # the first job is on the inference thread now
        queued = [asyncio.ensure_future(engine.submit([("q", f"doc {i}")])) for i in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull, match="max_queue=3"):
            await engine.submit([("q", "one too many")])
        queued[0].cancel()
        await asyncio.sleep(0.01)
        assert engine.pending == 2
        slow.release.set()
        results = await asyncio.gather(first, queued[1])
        await engine.stop()
        with pytest.raises(EngineStopped):
            await engine.submit([("q", "late")])
        return results, engine.metrics

    (first, second), metrics = asyncio.run(main())
    assert slow.calls == [1, 1]  # the cancelled job was never scored
    assert metrics.counter("fastrank_rejected_total") == 1 and metrics.counter("fastrank_cancelled_total") == 1
    np.testing.assert_allclose(second[0], reranker.logits([("q", "doc 1")]), atol=1e-5)


def test_cancelling_a_request_behind_others_drops_it_at_once(reranker):
    """A cancelled request that is not first in the queue leaves it at once: jobs used to be compared field by field,
    which compared their token arrays, raised ValueError and left the job queued (a false 503 later)."""
    slow = _Slow(reranker)

    async def main():
        engine = BatchingEngine(slow, BatchingConfig(max_wait_ms=0, max_queue=8, max_batch_requests=1))
        await engine.start()
        first = asyncio.ensure_future(engine.submit([("q", "running")]))
        await asyncio.to_thread(slow.entered.wait, 5)  # the first request holds the inference thread
        queued = []
        for i in range(3):  # queued in this order: doc 0, doc 1, doc 2
            queued.append(asyncio.ensure_future(engine.submit([("q", f"doc {i}")])))
            await _until(lambda: len(engine._jobs) == len(queued))
        queued[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued[1]
        after_cancel = len(engine._jobs), engine.pending, engine.metrics.counter("fastrank_cancelled_total")
        slow.release.set()
        results = await asyncio.gather(first, queued[0], queued[2])
        await engine.stop()
        return after_cancel, results, engine.metrics.counter("fastrank_cancelled_total")

    after_cancel, results, cancelled = asyncio.run(main())
    assert after_cancel == (2, 3, 1)  # two jobs queued, three requests pending, one cancelled
    assert cancelled == 1 and slow.calls == [1, 1, 1]  # the cancelled job was never scored
    for (logits, _), doc in zip(results, ["running", "doc 0", "doc 2"]):
        np.testing.assert_allclose(logits, reranker.logits([("q", doc)]), atol=1e-5)


def test_tokenization_runs_off_the_event_loop_and_holds_a_queue_place(reranker):
    """A request being tokenized leaves the event loop free (a small request is answered meanwhile) and counts
    towards max_queue from the moment it is accepted."""
    slow = _SlowTokenizer(reranker)

    async def main():
        engine = BatchingEngine(slow, BatchingConfig(max_wait_ms=0, max_queue=2))
        await engine.start()
        big = asyncio.ensure_future(engine.submit([("slow", "a long document")]))
        assert await asyncio.to_thread(slow.entered.acquire, timeout=5)
        depth = engine.pending
        small, _ = await engine.submit([("q", "small")])
        big_answered_first = big.done()
        second = asyncio.ensure_future(engine.submit([("slow", "another long one")]))
        assert await asyncio.to_thread(slow.entered.acquire, timeout=5)
        with pytest.raises(QueueFull, match=r"2 requests are queued or running \(max_queue=2\)"):
            await engine.submit([("q", "one too many")])
        slow.release.set()
        (big_logits, _), (second_logits, _) = await asyncio.gather(big, second)
        await engine.stop()
        return depth, small, big_answered_first, big_logits, second_logits, engine.pending

    depth, small, big_answered_first, big_logits, second_logits, pending = asyncio.run(main())
    assert slow.waited_out == 0  # released by the test, not by the timeout of a blocked event loop
    assert (depth, big_answered_first, pending) == (1, False, 0)
    np.testing.assert_allclose(small, reranker.logits([("q", "small")]), atol=1e-5)
    np.testing.assert_allclose(big_logits, reranker.logits([("slow", "a long document")]), atol=1e-5)
    np.testing.assert_allclose(second_logits, reranker.logits([("slow", "another long one")]), atol=1e-5)


def test_stop_drains_requests_still_being_tokenized(reranker):
    """An accepted request is answered by ``stop(drain=True)`` even when it was still being tokenized."""
    slow = _SlowTokenizer(reranker)

    async def main():
        engine = BatchingEngine(slow, BatchingConfig(max_wait_ms=0))
        await engine.start()
        job = asyncio.ensure_future(engine.submit([("slow", "accepted before stop")]))
        assert await asyncio.to_thread(slow.entered.acquire, timeout=5)
        stopping = asyncio.ensure_future(engine.stop(drain=True))
        await asyncio.sleep(0.05)
        stopped_early = stopping.done()
        slow.release.set()
        await stopping
        return stopped_early, job.result()[0], engine.pending

    stopped_early, logits, pending = asyncio.run(main())
    assert (stopped_early, pending, slow.waited_out) == (False, 0, 0)
    np.testing.assert_allclose(logits, reranker.logits([("slow", "accepted before stop")]), atol=1e-5)


def test_health_answers_while_a_long_request_is_tokenized(reranker, tiny_model_dir):
    from fastapi.testclient import TestClient

    from fastrank.serve.app import ServeConfig, create_app

    slow = _SlowTokenizer(reranker)
    answers = []
    with TestClient(create_app(ServeConfig(model=str(tiny_model_dir)), slow)) as test_client:
        request = threading.Thread(target=lambda: answers.append(test_client.post(
            "/rerank", json={"query": "slow", "documents": ["a long document"]})))
        request.start()
        assert slow.entered.acquire(timeout=5)
        health = test_client.get("/health")
        slow.release.set()
        request.join(10)
    assert slow.waited_out == 0  # /health was answered before the tokenization was released
    assert health.status_code == 200 and health.json()["queued"] == 1  # the request being tokenized
    assert answers[0].status_code == 200
    want = reranker.rerank("slow", ["a long document"])[0]["score"]
    assert answers[0].json()["results"][0]["relevance_score"] == pytest.approx(want, abs=1e-6)


def test_stop_drains_accepted_requests(reranker):
    async def main():
        engine = BatchingEngine(reranker, BatchingConfig(max_wait_ms=200))
        await engine.start()
        jobs = [asyncio.ensure_future(engine.submit([("q", d)])) for d in ("x y", "z")]
        await asyncio.sleep(0)
        await engine.stop(drain=True)
        return [j.result()[0] for j in jobs]

    out = asyncio.run(main())
    np.testing.assert_allclose(np.vstack(out), reranker.logits([("q", "x y"), ("q", "z")]), atol=1e-5)


@pytest.fixture(scope="module")
def client(reranker, tiny_model_dir):
    from fastapi.testclient import TestClient

    from fastrank.serve.app import ServeConfig, create_app

    config = ServeConfig(model=str(tiny_model_dir), max_documents=5, max_document_chars=400, model_name="tiny")
    with TestClient(create_app(config, reranker)) as test_client:
        yield test_client


def test_rerank_matches_reranker_for_every_request_shape(client, reranker):
    query, docs = "which passage ranks best", _docs(5, 7)
    expected = reranker.rerank(query, docs)
    for body in ({"query": query, "documents": docs},
                 {"query": query, "documents": [{"text": d} for d in docs], "model": "anything"},
                 {"query": query, "documents": docs, "return_documents": True}):
        response = client.post("/rerank", json=body)
        assert response.status_code == 200, response.text
        payload = response.json()
        assert payload["model"] == "tiny" and payload["usage"]["total_tokens"] > len(docs)
        assert [r["index"] for r in payload["results"]] == [r["index"] for r in expected]
        np.testing.assert_allclose([r["relevance_score"] for r in payload["results"]],
                                   [r["score"] for r in expected], atol=1e-6)
        assert ("document" in payload["results"][0]) == ("return_documents" in body)
    # text-embeddings-inference sends `texts` and reads a bare list of {index, score, text?}
    tei = client.post("/rerank", json={"query": query, "texts": docs, "return_text": True}).json()
    assert [(r["index"], r["text"]) for r in tei] == [(r["index"], docs[r["index"]]) for r in expected]
    np.testing.assert_allclose([r["score"] for r in tei], [r["score"] for r in expected], atol=1e-6)
    assert set(client.post("/rerank", json={"query": query, "texts": docs}).json()[0]) == {"index", "score"}
    top = client.post("/rerank", json={"query": query, "documents": docs, "top_n": 2, "return_documents": True})
    assert [(r["index"], r["document"]["text"]) for r in top.json()["results"]] == \
        [(r["index"], r["document"]) for r in expected[:2]]
    top_k = client.post("/rerank", json={"query": query, "documents": docs, "top_k": 2}).json()["results"]
    assert [r["index"] for r in top_k] == [r["index"] for r in expected[:2]]
    both = client.post("/rerank", json={"query": query, "documents": docs, "top_k": 2, "top_n": 3})
    assert both.status_code == 422 and "top_n=3 and top_k=2 disagree" in both.json()["detail"]
    raw = client.post("/rerank", json={"query": query, "documents": docs, "raw_scores": True}).json()["results"]
    np.testing.assert_allclose(sorted(r["relevance_score"] for r in raw),
                               sorted(reranker.logits([(query, d) for d in docs])[:, 0]), atol=1e-5)
    assert client.post("/rerank", json={"query": query, "documents": []}).json()["results"] == []
    v1 = client.post("/v1/rerank", json={"query": query, "documents": docs, "model": "rerank-v3.5", "top_n": 1})
    assert v1.json()["results"][0]["index"] == expected[0]["index"]


def test_rerank_fuses_first_stage_scores_like_the_reranker(client, reranker):
    query, docs = "which passage ranks best", _docs(5, 7)
    first = [0.9, 0.1, 0.5, 0.3, 0.7]
    expected = reranker.rerank(query, docs, first_stage_scores=first, fusion_weight=1.5)
    body = {"query": query, "documents": docs, "first_stage_scores": first, "fusion_weight": 1.5}
    results = client.post("/rerank", json=body).json()["results"]
    assert [r["index"] for r in results] == [r["index"] for r in expected]
    np.testing.assert_allclose([r["relevance_score"] for r in results], [r["score"] for r in expected], atol=1e-5)
    assert [r["index"] for r in client.post("/rerank", json={**body, "fusion_weight": 1e6}).json()["results"]] == \
        [0, 4, 2, 3, 1]  # a huge weight is the first stage's order
    missing = client.post("/rerank", json={"query": query, "documents": docs, "fusion_weight": 1.0})
    assert missing.status_code == 422 and "needs first_stage_scores" in missing.json()["detail"]
    short = client.post("/rerank", json={**body, "first_stage_scores": [1.0]})
    assert short.status_code == 422 and "1 scores for 5 documents" in short.json()["detail"]
    assert client.post("/rerank", json={**body, "fusion_weight": -1}).status_code == 422
    # raw_scores changes what a plain request returns, never what is fused: the same z(sigmoid) as Reranker.rerank
    raw = client.post("/rerank", json={**body, "raw_scores": True}).json()["results"]
    np.testing.assert_allclose([r["relevance_score"] for r in raw], [r["relevance_score"] for r in results], atol=1e-9)


def test_a_repeated_document_is_scored_once_and_ties(client, reranker):
    """As ``Reranker.rerank``: copies scored in different batch rows got logits ~1e-7 apart, ordered at random."""
    docs = ["paris is the capital", "berlin", "paris is the capital", {"text": "berlin", "title": ""}]
    before = client.get("/metrics").text
    reply = client.post("/rerank", json={"query": "capital of france", "documents": docs}).json()
    scores = {r["index"]: r["relevance_score"] for r in reply["results"]}
    assert scores[0] == scores[2] and scores[1] == scores[3] and len(reply["results"]) == 4
    positions = [r["index"] for r in reply["results"]]
    assert positions.index(0) < positions.index(2) and positions.index(1) < positions.index(3)  # caller's order
    want = {r["index"]: r["score"] for r in reranker.rerank("capital of france", docs)}
    assert scores == pytest.approx(want, abs=1e-6)
    counted = [line for line in client.get("/metrics").text.splitlines() if line.startswith("fastrank_pairs_total")]
    was = [line for line in before.splitlines() if line.startswith("fastrank_pairs_total")]
    assert sum(float(x.split()[-1]) for x in counted) - sum(float(x.split()[-1]) for x in was) == 2


def test_limits_and_bad_requests_name_the_problem(client):
    too_many = client.post("/rerank", json={"query": "q", "documents": ["d"] * 6})
    assert too_many.status_code == 413
    assert "takes at most 5 (fastrank serve --max-documents)" in too_many.json()["detail"]
    too_long = client.post("/rerank", json={"query": "q", "documents": ["ok", "x" * 401]})
    assert too_long.status_code == 413 and "document 1 has 401 characters" in too_long.json()["detail"]
    empty = client.post("/rerank", json={"query": "  ", "documents": ["d"]})
    assert empty.status_code == 422 and "query is empty" in empty.json()["detail"]
    missing = client.post("/rerank", json={"query": "q"})
    assert missing.status_code == 422 and "'documents'" in missing.json()["detail"]
    form = client.post("/rerank", content=json.dumps({"query": "q", "documents": ["d"]}),
                       headers={"content-type": "application/x-www-form-urlencoded"})  # curl -d without -H
    assert form.status_code == 415 and "content-type: application/json" in form.json()["detail"]
    for media in ("application/json; charset=utf-8", "Application/JSON"):
        ok = client.post("/rerank", content=json.dumps({"query": "q", "documents": ["d"]}),
                         headers={"content-type": media})
        assert ok.status_code == 200, media
    bad_field = client.post("/rerank", content=json.dumps({"query": "q", "documents": "d", "top_n": "x"}),
                            headers={"content-type": "application/json"})
    assert bad_field.status_code == 422  # a field of a JSON object: FastAPI's 422, whatever the content type
    wrong_type = client.post("/rerank", json={"query": "q", "documents": [1, 2]})
    assert wrong_type.status_code == 422
    negative = client.post("/rerank", json={"query": "q", "documents": ["d"], "top_n": -1})
    assert negative.status_code == 422
    long_query = client.post("/rerank", json={"query": "q" * 10_001, "documents": ["d"]})
    assert long_query.status_code == 413
    assert "takes at most 10000 (fastrank serve --max-query-chars)" in long_query.json()["detail"]


def test_a_tei_request_with_no_texts_gets_an_empty_list(client):
    """text-embeddings-inference clients read a bare list, also when there is nothing to rank."""
    tei = client.post("/rerank", json={"query": "q", "texts": []})
    assert tei.status_code == 200 and tei.json() == []
    cohere = client.post("/rerank", json={"query": "q", "documents": []})
    assert cohere.status_code == 200 and cohere.json() == {"results": [], "model": "tiny", "usage": {"total_tokens": 0}}


def test_health_metrics_and_openapi(client):
    from prometheus_client.parser import text_string_to_metric_families

    def count(name: str, **labels) -> float:
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
        return sum(s.value for s in families[name].samples if s.name.endswith("_total")
                   and all(s.labels.get(k) == v for k, v in labels.items())) if name in families else 0.0

    before = count("fastrank_requests", code="422"), count("fastrank_errors", kind="invalid")
    bad = client.post("/rerank", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["type"] == "json_invalid"  # FastAPI's own body
    assert client.post("/rerank", json={"documents": ["a"]}).status_code == 422  # no query
    assert (count("fastrank_requests", code="422"), count("fastrank_errors", kind="invalid")) == \
        (before[0] + 2, before[1] + 2)
    client.post("/rerank", json={"query": "q", "documents": ["a", "b"]})
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["backend"] == "torch"
    assert health["long_documents"] == "truncate" and "window_stride" in health and "max_length" in health
    assert health["max_tokens"] == 8192  # the engine's budget (--max-batch-tokens), not the Reranker's 2048
    assert "/" not in health["model"]  # the served name, not the model's path
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    ok = [s for s in families["fastrank_requests"].samples if s.labels.get("code") == "200"]
    assert ok and ok[0].value >= 1 and ok[0].labels["backend"] == "torch"
    pairs = [s for s in families["fastrank_batch_pairs"].samples if s.name.endswith("_count")]
    assert pairs[0].value >= 1
    assert "/rerank" in client.get("/openapi.json").json()["paths"]


def test_metrics_render_large_and_fractional_values_exactly():
    """Counters and sums are exact: ``:g`` printed 1234570 as 1.23457e+06, so rate() went flat past a million."""
    from prometheus_client.parser import text_string_to_metric_families

    from fastrank.serve.metrics import Metrics

    metrics = Metrics({"backend": "torch"})
    metrics.inc("fastrank_pairs_total", 1234567)
    metrics.inc("fastrank_pairs_total", 3)
    metrics.observe("fastrank_request_seconds", 1234567.125)
    metrics.observe("fastrank_queue_seconds", 0.1)
    metrics.observe("fastrank_queue_seconds", 0.2)
    metrics.gauges["fastrank_queue_depth"] = lambda: 2_000_000
    text = metrics.render()
    lines = set(text.splitlines())
    assert 'fastrank_pairs_total{backend="torch"} 1234570' in lines
    assert 'fastrank_request_seconds_sum{backend="torch"} 1234567.125' in lines
    assert 'fastrank_queue_seconds_sum{backend="torch"} 0.30000000000000004' in lines
    assert 'fastrank_queue_depth{backend="torch"} 2000000' in lines
    assert 'fastrank_rejected_total{backend="torch"} 0' in lines
    assert 'fastrank_batch_tokens_bucket{backend="torch",le="65536"} 0' in lines
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["fastrank_queue_seconds_sum"] == 0.1 + 0.2 and samples["fastrank_pairs_total"] == 1234570


def test_request_fields_are_strict(client, reranker):
    """Integer and boolean fields refuse what the library refuses (a bool or string for top_n, "yes" for a flag)
    with a 422 naming the field; numbers still take JSON integers."""
    query, docs = "which passage ranks best", ["a b c", "ranking passages", "d"]
    fused = {"first_stage_scores": [1, 0, 2], "fusion_weight": 1}
    for field, value, kind in [("top_n", True, "int_type"), ("top_n", "1", "int_type"), ("top_k", False, "int_type"),
                               ("top_k", 1.0, "int_type"), ("return_documents", "yes", "bool_type"),
                               ("return_text", 1, "bool_type"), ("raw_scores", "true", "bool_type"),
                               ("fusion_weight", "1", "float_type"), ("fusion_weight", True, "float_type")]:
        response = client.post("/rerank", json={"query": query, "documents": docs, **fused, field: value})
        assert response.status_code == 422, (field, value, response.text)
        assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [(["body", field], kind)], (field, value)
    bad_score = client.post("/rerank", json={"query": query, "documents": docs, **fused,
                                              "first_stage_scores": [1, "0", 2]})
    assert bad_score.status_code == 422
    assert [e["loc"] for e in bad_score.json()["detail"]] == [["body", "first_stage_scores", 1]]
    ok = client.post("/rerank", json={"query": query, "documents": docs, **fused, "top_n": 1,
                                      "return_documents": True, "raw_scores": False})
    assert ok.status_code == 200, ok.text
    want = reranker.rerank(query, docs, top_k=1, first_stage_scores=[1.0, 0.0, 2.0], fusion_weight=1.0)
    assert [(r["index"], r["document"]["text"]) for r in ok.json()["results"]] == \
        [(r["index"], r["document"]) for r in want]


def test_a_nan_or_infinity_in_a_request_is_a_422_not_a_500(client):
    """Python's JSON reader takes NaN and Infinity; FastAPI's 422 echoed them back and failed to write itself."""
    head = '{"query": "q", "documents": ["a b", "c"]'
    for tail, field in [(', "top_n": NaN}', "top_n"), (', "fusion_weight": -Infinity, "first_stage_scores": [1, 2]}',
                                                         "fusion_weight")]:
        response = client.post("/rerank", content=head + tail, headers={"content-type": "application/json"})
        assert response.status_code == 422, (tail, response.text)
        assert [e["loc"] for e in response.json()["detail"]] == [["body", field]]
        assert response.json()["detail"][0]["input"] in ("nan", "-inf")
    scores = client.post("/rerank", content=head + ', "fusion_weight": 1, "first_stage_scores": [NaN, 2]}',
                         headers={"content-type": "application/json"})
    assert scores.status_code == 422 and "first_stage_scores must be finite numbers; item 0 is nan" in scores.text


def test_a_lone_surrogate_echoed_by_a_422_is_escaped_not_a_500(client):
    """``"\\ud800"`` is valid JSON but no UTF-8: FastAPI's 422 echoed it in its input and failed to write itself."""
    for body, loc, echoed in [('{"query": "q\\ud800", "documents": 5}', ["body", "documents"], 5),
                              ('{"query": "q", "documents": ["x"], "top_n": "\\ud800"}', ["body", "top_n"],
                               "\\ud800")]:
        response = client.post("/rerank", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"] == loc and response.json()["detail"][0]["input"] == echoed
    text = client.post("/rerank", content='{"query": "q", "documents": ["a", "a", "a\\ud800b"]}',
                       headers={"content-type": "application/json"})
    assert text.status_code == 422 and "item 2: document is not valid Unicode text (lone surrogate" in text.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(app, **options):
    """Run ``app`` under uvicorn in a daemon thread on a free port; returns (server, thread, base URL) once it
    answers /health."""
    import httpx
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/health")
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return server, thread, url


def test_client_against_a_live_server(reranker, tiny_model_dir):
    from fastrank.client import Client, ServiceError
    from fastrank.serve.app import ServeConfig, create_app

    config = ServeConfig(model=str(tiny_model_dir), max_documents=3)
    server, thread, url = _start_server(create_app(config, reranker))
    try:
        client = Client(url, retries=0)
        docs = ["ranking passages", "a b c"]
        got = client.rerank("rank these", docs, return_documents=True)
        want = reranker.rerank("rank these", docs)
        assert [(r["index"], r["document"]["text"]) for r in got] == [(r["index"], r["document"]) for r in want]
        np.testing.assert_allclose([r["relevance_score"] for r in got], [r["score"] for r in want], atol=1e-6)
        fused = client.rerank("rank these", docs, first_stage_scores=[0.0, 1.0], fusion_weight=50.0)
        want = reranker.rerank("rank these", docs, first_stage_scores=[0.0, 1.0], fusion_weight=50.0)
        assert [r["index"] for r in fused] == [r["index"] for r in want] == [1, 0]  # the first stage's order
        with pytest.raises(ServiceError, match="takes at most 3 .fastrank serve --max-documents.") as info:
            client.rerank("q", ["d"] * 4)
        assert info.value.status == 413
        with pytest.raises(ServiceError) as info:  # FastAPI's validation list, as text
            client._post(url + "/rerank", {"query": "q", "documents": ["d"], "top_n": -1})
        assert str(info.value) == f"HTTP 422 from {url}/rerank: top_n: Input should be greater than or equal to 0"
        # what the service would refuse is refused before sending, as Reranker.rerank refuses it
        with pytest.raises(ValueError, match=r"top_n must be None or an integer >= 0 .*got -1"):
            client.rerank("q", ["d"], top_n=-1)
        with pytest.raises(ValueError, match="first_stage_scores must be finite numbers; item 1 is nan"):
            client.rerank("q", ["d", "e"], first_stage_scores=[1.0, float("nan")], fusion_weight=1.0)
        with pytest.raises(ValueError, match="first_stage_scores item 0 must be a number, got str"):
            client.rerank("q", ["d"], first_stage_scores=["a"], fusion_weight=1.0)
        assert [r["index"] for r in client.rerank("q", docs, top_n=np.int64(1))] == \
            [r["index"] for r in reranker.rerank("q", docs, top_k=1)]
        assert client.health()["status"] == "ok"
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_client_that_disconnects_has_its_queued_work_dropped(reranker, tiny_model_dir):
    import httpx

    from fastrank.serve.app import ServeConfig, create_app

    slow = _Slow(reranker)
    config = ServeConfig(model=str(tiny_model_dir), max_wait_ms=0, max_batch_requests=1)
    server, thread, url = _start_server(create_app(config, slow))
    try:
        holder = threading.Thread(target=lambda: httpx.post(url + "/rerank", timeout=30,
                                                            json={"query": "q", "documents": ["running"]}))
        holder.start()  # occupies the inference thread until released
        time.sleep(0.3)
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url + "/rerank", json={"query": "q", "documents": ["queued"]}, timeout=0.5)
        time.sleep(0.3)
        slow.release.set()
        holder.join(10)
        metrics = httpx.get(url + "/metrics").text
        assert "fastrank_cancelled_total" in metrics
        assert [line for line in metrics.splitlines() if line.startswith("fastrank_cancelled_total")][0].endswith(" 1")
        assert slow.calls == [1]  # the disconnected request was never scored
    finally:
        slow.release.set()
        server.should_exit = True
        thread.join(10)


def test_shutdown_answers_in_flight_requests(reranker, tiny_model_dir):
    import httpx

    from fastrank.serve.app import ServeConfig, create_app

    slow = _Slow(reranker)
    server, thread, url = _start_server(create_app(ServeConfig(model=str(tiny_model_dir)), slow),
                                        timeout_graceful_shutdown=20)
    answers = []
    request = threading.Thread(target=lambda: answers.append(httpx.post(
        url + "/rerank", json={"query": "q", "documents": ["in flight"]}, timeout=30)))
    request.start()
    time.sleep(0.3)
    server.should_exit = True  # what SIGTERM does: stop accepting, then drain
    time.sleep(0.3)
    slow.release.set()
    request.join(20)
    thread.join(20)
    assert answers and answers[0].status_code == 200
    want = reranker.rerank("q", ["in flight"])[0]["score"]
    assert answers[0].json()["results"][0]["relevance_score"] == pytest.approx(want, abs=1e-6)
    assert not thread.is_alive()


def test_requests_past_the_shutdown_cap_get_500_and_their_queued_work_is_dropped(reranker, tiny_model_dir):
    """When timeout_graceful_shutdown runs out, uvicorn cancels the requests still open (their clients get a 500);
    their queued work is dropped instead of being scored for nobody before the process exits."""
    import httpx

    from fastrank.serve.app import ServeConfig, create_app

    slow = _Slow(reranker)
    app = create_app(ServeConfig(model=str(tiny_model_dir), max_wait_ms=0, max_batch_requests=1), slow)
    server, thread, url = _start_server(app, timeout_graceful_shutdown=1)
    answers = {}

    def post(doc: str) -> None:
        answers[doc] = httpx.post(url + "/rerank", json={"query": "q", "documents": [doc]}, timeout=30).status_code

    requests = [threading.Thread(target=post, args=(doc,)) for doc in ("running", "queued")]
    try:
        requests[0].start()
        assert slow.entered.wait(5)  # "running" holds the inference thread
        requests[1].start()
        deadline = time.monotonic() + 5
        while len(app.state.engine._jobs) < 1:
            assert time.monotonic() < deadline, "the second request was never queued"
            time.sleep(0.01)
        server.should_exit = True  # what SIGTERM does; the cap (1 s) passes while inference is held
        for request in requests:
            request.join(10)
    finally:
        slow.release.set()
        thread.join(10)
    assert answers == {"running": 500, "queued": 500}
    assert slow.calls == [1]  # only the batch already running was scored
    assert app.state.engine.metrics.counter("fastrank_cancelled_total") == 1
    assert not thread.is_alive()


def test_serve_refuses_request_limits_below_one(tiny_model_dir, monkeypatch):
    """--max-documents 0 or --max-document-chars -5 would answer every request 413: refused before serving."""
    import uvicorn
    from typer.testing import CliRunner

    from fastrank.cli import app
    from fastrank.serve.app import ServeConfig

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets=None: served.append(server))
    runner = CliRunner()
    for option, field, value in [("--max-documents", "max_documents", "0"),
                                 ("--max-document-chars", "max_document_chars", "-5"),
                                 ("--max-query-chars", "max_query_chars", "0")]:
        result = runner.invoke(app, ["serve", str(tiny_model_dir), "--port", "0", "--threads", "1", option, value])
        assert isinstance(result.exception, ValueError), (option, result.output)
        assert str(result.exception).startswith(f"{field} must be an integer >= 1 (") and \
            str(result.exception).endswith(f"below 1 every request would be refused with 413), got {value}")
    assert served == []  # nothing was served
    with pytest.raises(ValueError, match="max_query_chars must be an integer >= 1 .* got True"):
        ServeConfig(model="m", max_query_chars=True)
    assert ServeConfig(model="m", max_documents=1, max_document_chars=1, max_query_chars=1).max_documents == 1


def test_serve_passes_sessions_to_the_reranker(tiny_model_dir):
    from fastrank.serve.app import ServeConfig, create_app

    with pytest.raises(ValueError, match="sessions=2 needs the onnx backend on a CPU; the torch backend"):
        create_app(ServeConfig(model=str(tiny_model_dir), sessions=2))
    with pytest.raises(ValueError, match="window_stride applies to long_documents='windows'"):
        create_app(ServeConfig(model=str(tiny_model_dir), window_stride=16))


def test_serve_command_checks_the_port_and_says_where_it_serves(tiny_model_dir, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from fastrank.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["serve", str(tiny_model_dir), "--port", "99999"])
    assert bad.exit_code != 0 and "--port must be a TCP port, 0-65535" in bad.output and "Traceback" not in bad.output
    ran = []

    def run(server: uvicorn.Server, sockets=None) -> None:
        ran.append(sockets[0].getsockname()[1])
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    ok = runner.invoke(app, ["serve", str(tiny_model_dir), "--port", "0", "--threads", "1"])
    assert ok.exit_code == 0, ok.output
    assert ran[0] > 0 and "serving" in ok.output and f"http://127.0.0.1:{ran[0]}:" in ok.output
    import fastrank.serve.app as serve_app

    real, built = serve_app.Reranker, []

    def reranker(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(serve_app, "Reranker", reranker)
    windows = runner.invoke(app, ["serve", str(tiny_model_dir), "--port", "0", "--threads", "1", "--long-documents",
                                  "windows", "--window-stride", "7"])
    assert windows.exit_code == 0, windows.output
    assert built[0].long_documents == "windows" and built[0].window_stride == 7


def test_serve_command_passes_max_query_chars(tiny_model_dir, monkeypatch):
    """--max-query-chars reaches the service of one worker (a longer query is a 413 naming it) and the config
    every worker of several reads from the environment."""
    import uvicorn
    import uvicorn.supervisors
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from fastrank.cli import app
    from fastrank.serve.app import CONFIG_ENV

    apps = []

    def run(server: uvicorn.Server, sockets=None) -> None:
        apps.append(server.config.app)
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    runner = CliRunner()
    one = runner.invoke(app, ["serve", str(tiny_model_dir), "--port", "0", "--threads", "1",
                              "--max-query-chars", "12"])
    assert one.exit_code == 0, one.output
    assert apps[0].state.config.max_query_chars == 12
    with TestClient(apps[0]) as test_client:
        too_long = test_client.post("/rerank", json={"query": "q" * 13, "documents": ["d"]})
        fits = test_client.post("/rerank", json={"query": "q" * 12, "documents": ["d"]})
    assert too_long.status_code == 413 and too_long.json()["detail"] == (
        "query has 13 characters; this service takes at most 12 (fastrank serve --max-query-chars)")
    assert fits.status_code == 200

    monkeypatch.setenv(CONFIG_ENV, "")  # restored after the test; the command sets it for its workers
    monkeypatch.setattr(uvicorn.supervisors.Multiprocess, "run", lambda supervisor: None)
    several = runner.invoke(app, ["serve", str(tiny_model_dir), "--port", "0", "--workers", "2",
                                  "--max-query-chars", "7"])
    assert several.exit_code == 0, several.output
    assert json.loads(os.environ[CONFIG_ENV])["max_query_chars"] == 7


def _serve_cli(*args: str) -> subprocess.Popen:
    """``fastrank serve ARGS`` as a user runs it (the console entry point, offline, one thread per worker), in its
    own process group so that a test can stop it with every worker it spawned."""
    return subprocess.Popen([sys.executable, "-m", "fastrank.cli", "serve", *args, "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _stop(proc: subprocess.Popen) -> None:
    """Kill a ``_serve_cli`` process group if it is still running (a test that failed, or one that is done)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _finished(proc: subprocess.Popen, timeout: float) -> str:
    """Stderr of a ``_serve_cli`` run that must end by itself within ``timeout`` seconds (a server that keeps
    restarting workers instead fails the test)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=10)  # what it printed before it was killed
        pytest.fail(f"fastrank serve did not exit within {timeout} s: {err[-2000:]}")
    return err


@pytest.mark.parametrize("model", ["notamodel", "./no/such/model"])
def test_several_workers_check_the_model_before_starting(model):
    """A model that does not load is one error from the parent, before any worker starts, as with one worker;
    uvicorn used to restart the crashing workers forever."""
    proc = _serve_cli(model, "--port", "0", "--workers", "2")
    err = _finished(proc, 20)
    assert proc.returncode == 2, err
    assert err.startswith("error: ") and f"{model!r}" in err and "Traceback" not in err
    assert "workers loading" not in err  # no worker was started


def test_a_worker_that_cannot_start_stops_the_server(tiny_model_dir):
    """What only a worker finds (here: --sessions 2 on a torch model) stops every worker with the worker's one-line
    error and a non-zero exit, instead of a restart loop."""
    proc = _serve_cli(str(tiny_model_dir), "--port", "0", "--workers", "2", "--sessions", "2")
    err = _finished(proc, 25)
    assert proc.returncode == 2, err
    assert "sessions=2 needs the onnx backend on a CPU" in err and "Traceback" not in err
    assert err.strip().endswith("a worker could not start (its error is above), so all 2 workers were stopped")


def _startup_address(proc: subprocess.Popen, timeout: float) -> re.Match:
    """The address in the startup line of a running ``_serve_cli`` (model loading may print before it); the rest
    of its stderr is drained in the background so that workers never block on a full pipe."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.2))
        except queue.Empty:
            continue
        match = re.search(r"http://127\.0\.0\.1:(\d+): POST /rerank", seen[-1])
        if match:
            return match
    pytest.fail(f"no startup line within {timeout} s: {''.join(seen)[-2000:]}")


@pytest.mark.parametrize("workers", [1, 2])
def test_port_0_serves_on_the_free_port_it_prints(tiny_model_dir, workers):
    """--port 0: the startup line names the port the socket was bound to, and the service answers there: a client
    connecting the moment the line shows is queued until the server accepts (it was refused, ~1 s with workers)."""
    import httpx

    proc = _serve_cli(str(tiny_model_dir), "--port", "0", "--workers", str(workers))
    try:
        match = _startup_address(proc, 20)
        assert int(match.group(1)) > 0, match.group(0)
        url = f"http://127.0.0.1:{match.group(1)}"
        health = httpx.get(url + "/health", timeout=30)  # no retry: a refused connection fails the test
        assert health.status_code == 200 and health.json()["status"] == "ok"
        ranked = httpx.post(url + "/rerank", json={"query": "q", "documents": ["a", "b"]}, timeout=10)
        assert ranked.status_code == 200 and len(ranked.json()["results"]) == 2
    finally:
        _stop(proc)


def test_a_port_in_use_is_one_clean_error(tiny_model_dir):
    """A taken port is refused before the model loads, with no startup line claiming to serve on it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve_cli(str(tiny_model_dir), "--port", str(port))
        err = _finished(proc, 20)
    assert proc.returncode == 2, err
    assert err.strip() == (f"error: port {port} on 127.0.0.1 is already in use; pick another --port "
                           "(0 = any free port)")


def test_check_model_refuses_without_loading(tiny_model_dir, tmp_path):
    """The parent's cheap check passes a loadable checkpoint and names what is wrong with one that is not."""
    from fastrank.errors import ModelLoadError
    from fastrank.serve.app import ServeConfig, check_model

    check_model(ServeConfig(model=str(tiny_model_dir)))
    (tmp_path / "fastrank.json").write_text("{", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="fastrank.json is not valid JSON"):
        check_model(ServeConfig(model=str(tmp_path)))
    (tmp_path / "fastrank.json").unlink()
    with pytest.raises(ModelLoadError, match="directory without config.json"):
        check_model(ServeConfig(model=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        check_model(ServeConfig(model=str(tiny_model_dir), backend="nope"))


def test_each_worker_of_several_labels_its_metrics(tiny_model_dir, monkeypatch):
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from fastrank.serve.app import CONFIG_ENV, ServeConfig, config_to_env, create_app_from_env

    monkeypatch.setenv(CONFIG_ENV, config_to_env(ServeConfig(model=str(tiny_model_dir), num_threads=1)))
    with TestClient(create_app_from_env()) as client:  # what each of `fastrank serve --workers N` runs
        client.post("/rerank", json={"query": "q", "documents": ["a", "b"]})
        assert client.get("/health").json()["worker"] == str(os.getpid())
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    ok = [s for s in families["fastrank_requests"].samples if s.labels.get("code") == "200"]
    assert ok and all(s.labels["worker"] == str(os.getpid()) for s in ok)


def test_the_service_ranks_a_multi_class_model_as_reranker_does(tiny_model_factory):
    from fastapi.testclient import TestClient

    from fastrank.serve.app import ServeConfig, create_app

    three = Reranker(str(tiny_model_factory(3)), backend="torch")
    query, docs = "which passage ranks best", _docs(4, 3)
    with TestClient(create_app(ServeConfig(model="three"), three)) as test_client:
        got = test_client.post("/rerank", json={"query": query, "documents": docs}).json()["results"]
        raw = test_client.post("/rerank", json={"query": query, "documents": docs, "raw_scores": True})
    assert raw.status_code == 422, raw.text  # not probabilities labelled as raw scores
    assert raw.json()["detail"] == ("raw_scores needs a one-logit model; this model has 3 labels and is ranked by the "
                                    "softmax probability of its last class, which is what relevance_score holds "
                                    "without raw_scores")
    want = three.rerank(query, docs)  # the last class's probability (tests/test_reranker.py checks it by hand)
    assert [r["index"] for r in got] == [r["index"] for r in want]
    np.testing.assert_allclose([r["relevance_score"] for r in got], [r["score"] for r in want], atol=1e-6)
