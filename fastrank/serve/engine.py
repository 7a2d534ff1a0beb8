"""Cross-request batching: pairs from concurrent requests share token-budget batches on one inference thread.

Each request is tokenized once (``Reranker.encode``, on a small pool of tokenizer threads, so that a long request
never holds up the event loop: /health, /metrics and other requests go on meanwhile) and queued as a job. The
batching loop waits for the first job, then up to ``max_wait_ms`` for more, takes jobs first-in first-out until
``max_batch_tokens`` padded tokens, and scores all their rows in one ``Reranker.run`` call (the same length-sorted
batching every backend uses), on a single worker thread so the event loop keeps accepting requests. Every job gets
its own rows back, in its own order. A request larger than one step is cut into step-sized pieces (its rows longest
first) and goes back to the end of the queue after each step it runs in, so requests that arrived meanwhile run in
the next step: a 20-document request waits at most one step for each large request ahead of it, not until they
end (turns are per request: under load a large request takes longer). The queue is
bounded (``QueueFull`` → HTTP 503): a request holds its place from the moment it is accepted, through tokenization,
until it is answered, so requests being tokenized count towards ``max_queue`` too. A cancelled request that is not
being scored is dropped (tokenized or not, whole or part-way), and ``stop()`` drains what was accepted. It needs
only asyncio, so it is tested without an HTTP server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from fastrank.batching import EncodedPairs, plan_batches, round_up
from fastrank.errors import FastrankError
from fastrank.serve.metrics import Metrics

logger = logging.getLogger(__name__)

TOKENIZER_THREADS = 2  # a long request's tokenization does not hold up a short one's; inference has its own thread


class QueueFull(FastrankError):
    """The bounded request queue is full; the caller should retry later (HTTP 503 with Retry-After)."""


class EngineStopped(FastrankError):
    """The engine is shutting down and takes no new work."""


@dataclass
class BatchingConfig:
    """Knobs of the cross-request batcher.

    max_batch_tokens: padded tokens (rows x padded length) per engine step; also the token budget of each forward
        pass inside a step, and the size of the pieces a larger request is cut into (one per step, in turn with
        other requests).
    max_wait_ms: how long the first job of a step waits for others to join it.
    max_queue: requests tokenizing, waiting or running at most; one more is refused with ``QueueFull``.
    max_batch_requests: requests per step at most (1 = no cross-request batching, the reference for the bench).
    """

    max_batch_tokens: int = 8192
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_batch_requests: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_batch_tokens, int) or self.max_batch_tokens < 8:
            raise ValueError(f"max_batch_tokens must be an integer >= 8, got {self.max_batch_tokens!r}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if not isinstance(self.max_queue, int) or self.max_queue < 1:
            raise ValueError(f"max_queue must be a positive integer, got {self.max_queue!r}")
        if self.max_batch_requests is not None and self.max_batch_requests < 1:
            raise ValueError(f"max_batch_requests must be >= 1 or None, got {self.max_batch_requests!r}")


PAD_MULTIPLE = 8  # a row's cost of the step budget is its length rounded up to this


def row_tokens(lengths: np.ndarray) -> np.ndarray:
    """What each row costs of a step's token budget: its length rounded up to ``PAD_MULTIPLE``."""
    return round_up(np.asarray(lengths, dtype=np.int64), PAD_MULTIPLE)


def plan_pieces(lengths: np.ndarray, budget: int, batch_size: int | None = None,
                pad_multiple: int = PAD_MULTIPLE) -> list[np.ndarray]:
    """A request's rows cut into step-sized pieces. A request whose rows fit ``budget`` tokens (``row_tokens``) is
    one piece in its own order. A larger one is cut into the forward passes ``Reranker.run`` would make of it
    (``plan_batches`` with the reranker's ``batch_size`` and padding, longest rows first), and consecutive passes are
    grouped into pieces of at most ``budget`` padded tokens (a pass above it alone): a piece is run as the same
    passes, never leaving a small batch over."""
    lengths = np.asarray(lengths)
    if int(row_tokens(lengths).sum()) <= budget:
        return [np.arange(len(lengths))]
    passes = plan_batches(lengths, batch_size=batch_size or len(lengths), max_tokens=budget,
                          pad_to_multiple_of=pad_multiple)
    pieces, start, used = [], 0, 0
    for i, rows in enumerate(passes):
        cost = len(rows) * round_up(int(lengths[rows[0]]), pad_multiple)  # its longest row comes first
        if i > start and used + cost > budget:
            pieces.append(np.concatenate(passes[start:i]))
            start, used = i, 0
        used += cost
    pieces.append(np.concatenate(passes[start:]))
    return pieces


@dataclass(eq=False)  # jobs are found in the queue by identity: comparing fields would compare token arrays
class _Job:
    encoded: EncodedPairs
    owners: np.ndarray | None
    future: asyncio.Future
    pieces: list[np.ndarray]  # row indices of each step-sized piece (plan_pieces)
    piece_tokens: list[int]
    tokens: int  # still to score: the tokens of the pieces from ``next_piece`` on
    next_piece: int = 0  # pieces before it are scored into ``rows``
    rows: np.ndarray | None = None
    enqueued: float = field(default_factory=time.perf_counter)

    def rows_of(self, part: slice) -> np.ndarray:
        """The row indices of the pieces in ``part``, in the order a step scores them."""
        return np.concatenate(self.pieces[part])


class BatchingEngine:
    """Scores requests for one ``Reranker`` with cross-request batching (see the module docstring)."""

    def __init__(self, reranker, config: BatchingConfig | None = None, metrics: Metrics | None = None) -> None:
        self.reranker = reranker
        self.config = config or BatchingConfig()
        self.metrics = metrics or Metrics()
        self._jobs: deque[_Job] = deque()
        self._pending = 0  # accepted and not yet answered (tokenizing, waiting or running)
        self._encoding = 0  # accepted and still being tokenized: the loop outlives them
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._tokenizer: ThreadPoolExecutor | None = None
        self._stopping = False
        self._drain = True

    @property
    def pending(self) -> int:
        """Requests accepted and not yet answered: tokenizing, waiting or running (what ``max_queue`` bounds)."""
        return self._pending

    async def start(self) -> None:
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastrank-infer")
        self._tokenizer = ThreadPoolExecutor(max_workers=TOKENIZER_THREADS, thread_name_prefix="fastrank-tokenize")
        self._stopping, self._drain = False, True
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="fastrank-batcher")

    async def stop(self, drain: bool = True) -> None:
        """Stop taking work; with ``drain`` answer every accepted job first, else fail the waiting ones (and those
        still being tokenized, once their tokenization ends)."""
        self._stopping = True
        if not drain:
            self._drain = False
            while self._jobs:
                job = self._jobs.popleft()
                self._pending -= 1
                if not job.future.done():
                    job.future.set_exception(EngineStopped("the server is shutting down"))
        if self._task is not None:
            self._wakeup.set()
            await self._task
            self._task = None
        for pool in (self._executor, self._tokenizer):
            if pool is not None:
                pool.shutdown(wait=True)
        self._executor = self._tokenizer = None

    async def submit(self, pairs) -> tuple[np.ndarray, int]:
        """``(logits, tokens)``: raw fp32 logits, one row per pair in the caller's order, and the tokens scored.

        Raises ``QueueFull`` when ``max_queue`` requests are already pending (tokenizing, waiting or running),
        ``EngineStopped`` after ``stop()``.
        """
        if self._task is None or self._stopping:
            raise EngineStopped("the batching engine is not running")
        if self._pending >= self.config.max_queue:
            self.metrics.inc("fastrank_rejected_total")
            held = f"{self._pending} request{'s are' if self._pending != 1 else ' is'}"
            raise QueueFull(f"{held} queued or running (max_queue={self.config.max_queue}); retry later")
        self._pending += 1  # the request holds its place from here until it is answered
        try:
            encoded, owners = await self._encode(pairs)
        except BaseException:
            self._pending -= 1
            raise
        if not len(encoded):
            self._pending -= 1
            return np.zeros((0, self.reranker.num_labels), dtype=np.float32), 0
        pieces = plan_pieces(encoded.lengths, self.config.max_batch_tokens, getattr(self.reranker, "batch_size", None),
                             getattr(getattr(self.reranker, "backend", None), "pad_multiple", PAD_MULTIPLE))
        cost = row_tokens(encoded.lengths)
        piece_tokens = [int(cost[p].sum()) for p in pieces]
        job = _Job(encoded, owners, asyncio.get_running_loop().create_future(), pieces, piece_tokens,
                   sum(piece_tokens))
        self._jobs.append(job)
        self._wakeup.set()
        try:
            rows = await job.future
        except asyncio.CancelledError:
            if job in self._jobs:  # not running now: drop it so nobody scores pairs nobody will read
                self._jobs.remove(job)
                self._pending -= 1
                self.metrics.inc("fastrank_cancelled_total")
            raise
        return self.reranker.reduce(rows, owners), int(encoded.lengths.sum())

    async def _encode(self, pairs) -> tuple[EncodedPairs, np.ndarray | None]:
        """``Reranker.encode`` on the tokenizer threads, so that a long request never blocks the event loop."""
        self._encoding += 1
        try:
            encoded = await asyncio.get_running_loop().run_in_executor(self._tokenizer, self.reranker.encode, pairs)
        except asyncio.CancelledError:  # the client went away while its request was tokenized: never queue it
            self.metrics.inc("fastrank_cancelled_total")
            raise
        finally:
            self._encoding -= 1
            self._wakeup.set()  # a stopping loop waits for tokenization to end
        if self._stopping and not self._drain:
            raise EngineStopped("the server is shutting down")
        return encoded

    def _take(self) -> list[tuple[_Job, slice]]:
        """The next step: queued jobs first-in first-out while their tokens fit the budget (the first always goes),
        each with the run of its pieces that fits; a job taken whole or in part leaves the queue for the step."""
        budget, cap = self.config.max_batch_tokens, self.config.max_batch_requests
        taken, tokens = [], 0
        while self._jobs and (cap is None or len(taken) < cap):
            job = self._jobs[0]
            if job.future.done():  # cancelled while queued, before its submit() could drop it
                self._jobs.popleft()
                self._pending -= 1
                self.metrics.inc("fastrank_cancelled_total")
                continue
            first = end = job.next_piece
            while end < len(job.pieces) and (not tokens or tokens + job.piece_tokens[end] <= budget):
                tokens += job.piece_tokens[end]
                end += 1
            if end == first:
                break
            self._jobs.popleft()
            taken.append((job, slice(first, end)))
        return taken

    def _finish(self, steps: list[tuple[_Job, slice]], rows: np.ndarray | None, error: Exception | None) -> None:
        """Hand each job of a finished step its rows: answer a job with no pieces left, send one with pieces left to
        the back of the queue (behind the jobs that arrived during the step), and fail all of them on ``error``."""
        offset = 0
        for job, part in steps:
            indices = job.rows_of(part)
            scored, offset = slice(offset, offset + len(indices)), offset + len(indices)
            done = job.future.done()  # cancelled while its piece ran
            if error is None and not done:
                if job.rows is None:
                    job.rows = np.empty((len(job.encoded), rows.shape[1]), dtype=np.float32)
                job.rows[indices] = rows[scored]
                job.next_piece = part.stop
                job.tokens -= sum(job.piece_tokens[part])
                if job.next_piece < len(job.pieces):
                    if not (self._stopping and not self._drain):
                        self._jobs.append(job)
                        continue
                    job.future.set_exception(EngineStopped("the server is shutting down"))
                else:
                    job.future.set_result(job.rows)
            elif error is not None and not done:
                job.future.set_exception(error)
            elif done and part.stop < len(job.pieces):
                self.metrics.inc("fastrank_cancelled_total")  # left part-way: its other pieces are never scored
            self._pending -= 1

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                if self._stopping and not self._encoding:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            first = self._jobs[0].enqueued
            deadline = first + self.config.max_wait_ms / 1000.0
            while (not self._stopping and time.perf_counter() < deadline
                   and sum(j.tokens for j in self._jobs) < self.config.max_batch_tokens
                   and (self.config.max_batch_requests is None or len(self._jobs) < self.config.max_batch_requests)):
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), max(deadline - time.perf_counter(), 0.0))
                except asyncio.TimeoutError:
                    break
            steps = self._take()
            if not steps:
                continue
            started = time.perf_counter()
            merged = EncodedPairs.concat([job.encoded.take(job.rows_of(part)) for job, part in steps])
            rows, error = None, None
            try:
                rows = await loop.run_in_executor(self._executor, self.reranker.run, merged,
                                                  self.config.max_batch_tokens)
            except Exception as exc:  # a failed step fails its own jobs, never the loop
                logger.exception("inference failed for a batch of %d requests", len(steps))
                error = exc
            except BaseException:  # the loop itself is cancelled: nobody will score these jobs
                self._finish(steps, None, EngineStopped("the server is shutting down"))
                raise
            self._finish(steps, rows, error)
            done = time.perf_counter()
            self.metrics.observe_step(
                requests=len(steps), pairs=len(merged), tokens=sum(sum(j.piece_tokens[p]) for j, p in steps),
                inference_s=done - started, queue_s=[started - j.enqueued for j, p in steps if p.start == 0],
                scored=error is None)
