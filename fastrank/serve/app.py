"""The HTTP rerank service (FastAPI): ``POST /rerank``, ``GET /health``, ``GET /metrics``, OpenAPI at ``/docs``.

``POST /rerank`` takes what Cohere, Jina, infinity and text-embeddings-inference clients send — ``query``,
``documents`` (strings or ``{"text": ...}`` objects, with an optional ``title`` scored with the text) or ``texts``,
``top_n``, ``return_documents`` (or TEI's ``return_text``) — and answers
``{"results": [{"index", "relevance_score", "document"?}], "model", "usage"}``; a
request that sends ``texts`` (text-embeddings-inference's field) gets TEI's answer, ``[{"index", "score", "text"?}]``.
Requests are scored by a ``BatchingEngine`` that batches pairs across concurrent requests. Importing this module
imports FastAPI (the ``serve`` extra); ``import fastrank`` never does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
import traceback
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastrank.errors import FastrankError, ModelLoadError, require

require("fastapi", "serve", "the HTTP rerank service")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.encoders import jsonable_encoder  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, StrictFloat  # noqa: E402

from fastrank.backends.base import get_backend  # noqa: E402
from fastrank.batching import distinct_pairs, explain_bad_text, is_integer  # noqa: E402
from fastrank.documents import document_length  # noqa: E402
from fastrank.export.manifest import read_manifest  # noqa: E402
from fastrank.fusion import check_fusion_input, fuse_scores  # noqa: E402
from fastrank.reranker import (  # noqa: E402
    Reranker,
    artifact_encoder,
    check_rerank_input,
    fusion_relevance,
    ranked,
    relevance,
    relevance_order,
)
from fastrank.serve.engine import BatchingConfig, BatchingEngine, EngineStopped, QueueFull  # noqa: E402
from fastrank.serve.metrics import Metrics  # noqa: E402

logger = logging.getLogger(__name__)

CONFIG_ENV = "FASTRANK_SERVE_CONFIG"


# the request limits of ServeConfig, each an integer >= 1, and what each one counts
_LIMITS = {"max_documents": "documents per request", "max_document_chars": "characters per document",
           "max_query_chars": "characters in the query"}


@dataclass
class ServeConfig:
    """What ``fastrank serve`` runs: the model, its backend, the batcher and the request limits."""

    model: str
    backend: str = "auto"
    num_threads: int | None = None
    sessions: int | str = "auto"
    long_documents: str = "truncate"
    window_stride: int | None = None
    max_batch_tokens: int = 8192
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_batch_requests: int | None = None
    max_documents: int = 1000
    max_document_chars: int = 100_000
    max_query_chars: int = 10_000
    model_name: str | None = None

    def __post_init__(self) -> None:
        for name, what in _LIMITS.items():
            value = getattr(self, name)
            if not is_integer(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1 ({what}; below 1 every request would be refused "
                                 f"with 413), got {value!r}")

    def batching(self) -> BatchingConfig:
        return BatchingConfig(self.max_batch_tokens, self.max_wait_ms, self.max_queue, self.max_batch_requests)


class Document(BaseModel):
    text: str
    title: str | None = Field(None, description="Scored with the text, joined by the tokenizer's separator "
                              "(fastrank.documents); for models trained with titles.")


class RerankRequest(BaseModel):
    """A rerank request in the shape the common rerank clients send; unknown fields are ignored.

    Integer and boolean fields are strict, as the library is: ``"top_n": true`` or ``"1"`` and
    ``"return_documents": "yes"`` are a 422 naming the field, not read as 1 and True. Numbers accept integers."""

    model_config = ConfigDict(extra="ignore")

    query: str = Field(description="The text to rank the documents against.")
    documents: list[str | Document] | None = Field(None, description="Documents (Cohere, Jina, infinity).")
    texts: list[str] | None = Field(None, description="Documents (text-embeddings-inference).")
    top_n: int | None = Field(None, ge=0, strict=True, description="Return only the best N.")
    top_k: int | None = Field(None, ge=0, strict=True,
                              description="Another name for top_n (mixedbread, fastrank's CLI).")
    return_documents: bool | None = Field(None, strict=True, description="Echo each document's text in its result.")
    return_text: bool | None = Field(None, strict=True,
                                     description="text-embeddings-inference's name for return_documents.")
    raw_scores: bool = Field(False, strict=True, description="Return raw logits instead of the model's activation "
                             "(one-logit models only: a multi-class model is ranked by its last class's probability; "
                             "with fusion_weight > 0 the fused score is returned).")
    first_stage_scores: list[StrictFloat] | None = Field(
        None, description="The retriever's score for each document (fastrank extension), for fusion_weight.")
    fusion_weight: float = Field(0.0, ge=0, strict=True, description="Rank by z(reranker) + fusion_weight * z(first "
                                 "stage) per request (fastrank.fusion); 0 = the reranker alone.")
    model: str | None = Field(None, description="Accepted for client compatibility; the server has one model.")


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: Document | None = None


class RerankResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    results: list[RerankResult]
    model: str
    usage: dict[str, int]


class _RequestError(Exception):
    """A request the service refuses before scoring: 413 (a limit) or 422 (malformed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _documents(req: RerankRequest, config: ServeConfig, num_labels: int = 1) -> list[str | dict[str, str]]:
    """The request's documents after the checks ``Reranker.rerank`` makes and the service's limits; raises
    ``_RequestError`` (422 malformed, 413 over a limit) before any inference."""
    if req.raw_scores and num_labels > 1:  # relevance() would ignore "identity": the caller would get probabilities
        raise _RequestError(422, f"raw_scores needs a one-logit model; this model has {num_labels} labels and is "
                                 "ranked by the softmax probability of its last class, which is what "
                                 "relevance_score holds without raw_scores")
    if req.documents is not None and req.texts is not None:
        raise _RequestError(422, "give either 'documents' or 'texts', not both")
    if req.top_k is not None and req.top_n is not None and req.top_k != req.top_n:
        raise _RequestError(422, f"top_n={req.top_n} and top_k={req.top_k} disagree; give one of them")
    raw = req.documents if req.documents is not None else req.texts
    if raw is None:
        raise _RequestError(422, "the request needs 'documents' (a list of strings or {'text': ...} objects) "
                                  "or 'texts' (a list of strings)")
    try:
        docs = check_rerank_input(req.query, [d if isinstance(d, str) else d.model_dump(exclude_none=True)
                                              for d in raw], _top(req))
    except (TypeError, ValueError) as exc:  # the checks Reranker.rerank makes, with the same messages
        raise _RequestError(422, str(exc)) from exc
    if len(req.query) > config.max_query_chars:
        raise _RequestError(413, f"query has {len(req.query)} characters; this service takes at most "
                                  f"{config.max_query_chars} (fastrank serve --max-query-chars)")
    if len(docs) > config.max_documents:
        raise _RequestError(413, f"{len(docs)} documents in one request; this service takes at most "
                                  f"{config.max_documents} (fastrank serve --max-documents)")
    for i, doc in enumerate(docs):
        if document_length(doc) > config.max_document_chars:
            raise _RequestError(413, f"document {i} has {document_length(doc)} characters (title and text); this "
                                      f"service takes at most {config.max_document_chars} (fastrank serve "
                                      f"--max-document-chars)")
    try:  # the checks Reranker.rerank makes, before any inference
        check_fusion_input(req.first_stage_scores, len(docs), req.fusion_weight)
    except ValueError as exc:
        raise _RequestError(422, str(exc)) from exc
    return docs


def _json_safe(value: Any) -> Any:
    """``value`` with what a JSON answer cannot carry written as text: every NaN or infinite float as 'nan' /
    'inf', and a lone surrogate (``"\\ud800"`` is valid JSON but no UTF-8) as its escape ``\\ud800``."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _top(req: RerankRequest) -> int | None:
    return req.top_n if req.top_n is not None else req.top_k


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(config: ServeConfig, reranker: Reranker | None = None, worker: str | None = None) -> FastAPI:
    """The service for ``config``; pass a loaded ``reranker`` to skip loading ``config.model`` (tests). ``worker``
    (one of several server processes) labels its metrics and /health, since each process counts on its own."""
    reranker = reranker or Reranker(config.model, backend=config.backend, num_threads=config.num_threads,
                                    sessions=config.sessions, long_documents=config.long_documents,
                                    window_stride=config.window_stride)
    prepared = reranker.warmup()  # CUDA graphs / TensorRT profiles before the first request, not during it
    if prepared:
        logger.info("warmed %d shapes of the %s backend", prepared, reranker.backend.name)
    # backend, max_length and the long-document settings, for /health (which names the model as it is served); the
    # token budget per forward pass is the engine's (--max-batch-tokens), not the Reranker's own default
    info = {**{k: v for k, v in reranker.describe().items() if k != "model"}, "max_tokens": config.max_batch_tokens}
    metrics = Metrics({"backend": str(info.get("backend", "")), "precision": str(info.get("precision", "fp32")),
                       **({"worker": worker} if worker else {})})
    engine = BatchingEngine(reranker, config.batching(), metrics)
    metrics.gauges["fastrank_queue_depth"] = lambda: engine.pending
    model_name = config.model_name or os.path.basename(os.path.normpath(config.model))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await engine.start()
        yield
        await engine.stop(drain=True)  # uvicorn has stopped accepting; answer what was accepted

    app = FastAPI(title="fastrank", version=_version(), lifespan=lifespan,
                  description="Cross-encoder reranking with cross-request batching.")
    app.state.engine, app.state.reranker, app.state.config = engine, reranker, config

    def error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
        metrics.inc("fastrank_requests_total", code=str(status))
        metrics.inc("fastrank_errors_total", kind=kind)
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError):
        """A body FastAPI rejects (bad JSON, a missing or mistyped field): FastAPI's 422, counted like ours; a body
        sent without a JSON content type (``curl -d`` sends a form's) is a 415 that says so, not a 422 about a
        dictionary."""
        sent = request.headers.get("content-type", "")
        media = sent.split(";")[0].strip().lower()
        not_an_object = all(e.get("loc") == ("body",) and e.get("type") in ("model_attributes_type", "dict_type")
                            for e in exc.errors())  # the body as a whole, not a field of it
        if request.method == "POST" and not_an_object and not (media == "application/json" or media.endswith("+json")):
            return error(415, f"send the body as JSON with the header content-type: application/json (curl: -H "
                              f"'content-type: application/json'); got content-type {sent or 'none'!r}", "invalid")
        metrics.inc("fastrank_requests_total", code="422")
        metrics.inc("fastrank_errors_total", kind="invalid")
        # FastAPI's own 422 body, with a NaN or infinity the request sent echoed as text: JSON has no such number
        return JSONResponse(status_code=422, content={"detail": _json_safe(jsonable_encoder(exc.errors()))})

    @app.post("/rerank", response_model=RerankResponse, response_model_exclude_none=True,
              responses={413: {"description": "A request limit was exceeded (the message names it)."},
                         503: {"description": "The queue is full or the server is stopping; retry later."}})
    async def rerank(req: RerankRequest, request: Request):
        started = time.perf_counter()
        try:
            docs = _documents(req, config, reranker.num_labels)
        except _RequestError as exc:
            return error(exc.status, str(exc), "limit" if exc.status == 413 else "invalid")
        if not docs:
            metrics.inc("fastrank_requests_total", code="200")
            if req.texts is not None:  # a text-embeddings-inference client reads a bare list, empty here
                return JSONResponse([])
            return {"results": [], "model": model_name, "usage": {"total_tokens": 0}}
        distinct, index = distinct_pairs([(req.query, d) for d in docs])  # a repeated document is scored once
        work = asyncio.ensure_future(engine.submit(distinct))
        watch = asyncio.ensure_future(_until_disconnected(request))
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # uvicorn gave up on this request (shutdown cap): nobody reads its scores
            work.cancel()
            raise
        finally:
            watch.cancel()
        if not work.done():  # the client went away: cancel its queued work and answer nobody
            work.cancel()
            metrics.inc("fastrank_requests_total", code="499")
            return PlainTextResponse("client closed request", status_code=499)
        try:
            logits, tokens = work.result()
        except QueueFull as exc:
            return error(503, str(exc), "queue_full", {"Retry-After": "1"})
        except EngineStopped as exc:
            return error(503, str(exc), "stopping", {"Retry-After": "1"})
        except (TypeError, ValueError) as exc:  # a bad text: numbered among the request's documents
            return error(422, str(explain_bad_text([(req.query, d) for d in docs]) or exc), "invalid")
        except Exception as exc:  # an inference failure is a 500 for this request only
            return error(500, f"inference failed: {exc}", "inference")
        logits = logits[index]
        scores = relevance(logits, reranker.activation)
        order = relevance_order(logits)  # saturated scores (sigmoid 1.0) must not tie what the logits tell apart
        if req.fusion_weight:  # fuses the activated scores, as Reranker.rerank does: raw_scores changes no ranking
            try:
                scores = fuse_scores(fusion_relevance(logits, reranker.activation), req.first_stage_scores,
                                     req.fusion_weight)
                order = (scores, order)  # fused scores that tie exactly are ordered by the logits
            except ValueError as exc:  # the request's first-stage scores were checked: the model's are not finite
                return error(500, f"inference failed: {exc}", "inference")
        elif req.raw_scores:
            scores = relevance(logits, "identity")
        echo = bool(req.return_documents if req.return_documents is not None else req.return_text)
        results = ranked(scores, docs, _top(req), echo, key=order)
        metrics.inc("fastrank_requests_total", code="200")
        metrics.observe("fastrank_request_seconds", time.perf_counter() - started)
        if req.texts is not None:  # a text-embeddings-inference client: its answer is a bare list
            return JSONResponse([{"index": r["index"], "score": r["score"],
                                  **({"text": r["document"]} if "document" in r else {})} for r in results])
        return {"results": response_body(results), "model": model_name, "usage": {"total_tokens": tokens}}

    for alias in ("/v1/rerank", "/v2/rerank"):  # the paths Cohere's and Jina's SDKs call
        app.post(alias, response_model=RerankResponse, response_model_exclude_none=True,
                 include_in_schema=False)(rerank)

    @app.get("/health")
    async def health():
        body = {"status": "ok", "model": model_name, **info, "queued": engine.pending,
                **({"worker": worker} if worker else {})}
        return JSONResponse(body, status_code=200)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus_metrics():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _version() -> str:
    from fastrank import __version__

    return __version__


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` and multi-worker serving: the config comes from $FASTRANK_SERVE_CONFIG.

    A worker that cannot build its app (the model does not load, a setting the model refuses) prints the error and
    exits with uvicorn's STARTUP_FAILURE code: it would fail the same way on every restart, and uvicorn's
    multi-worker supervisor stops on that code instead of restarting the worker forever."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"${CONFIG_ENV} is not set; start the server with `fastrank serve MODEL`")
    try:
        return create_app(ServeConfig(**json.loads(text)), worker=str(os.getpid()))
    except (FastrankError, ValueError, TypeError) as exc:  # bad input: one line, as the CLI reports it
        print(f"error: worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
    except Exception:  # a bug or a broken environment: the traceback says where
        traceback.print_exc()
    from uvicorn.config import STARTUP_FAILURE

    raise SystemExit(STARTUP_FAILURE)


def check_model(config: ServeConfig) -> None:
    """The checks loading ``config.model`` makes first, without loading any weights: the backend name, an
    artifact's manifest, tokenizer and model file, a checkpoint's location and config (a hub id: its config.json).

    ``fastrank serve --workers N`` calls it before starting workers, so that a missing or unreadable model is one
    error in the parent instead of N workers failing (the parent never holds a copy of the model). Raises
    ModelLoadError (or UnknownBackendError) with the message the loader would give."""
    local = Path(config.model).expanduser()
    manifest = read_manifest(local) if local.is_dir() else None
    get_backend(config.backend if config.backend != "auto" else manifest["format"] if manifest else "torch")
    if manifest is not None:
        artifact_encoder(local, manifest)  # the tokenizer.json Reranker reads
        if manifest["format"] == "onnx":
            model_file = local / manifest.get("model_file", "model.onnx")
            if not model_file.is_file():
                raise ModelLoadError(f"{model_file} does not exist; re-export the model with `fastrank export`")
            return
    from fastrank.model import load_config, resolve_model_path

    load_config(config.model, resolve_model_path(config.model))  # as CrossEncoder reads it first


def config_to_env(config: ServeConfig) -> str:
    return json.dumps(asdict(config))


def response_body(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reranker.rerank results in the service's result shape (index, relevance_score, document)."""
    return [{"index": r["index"], "relevance_score": r["score"],
             **({"document": _echo(r["document"])} if "document" in r else {})} for r in results]


def _echo(doc: Any) -> dict[str, Any]:
    return {"text": doc} if isinstance(doc, str) else dict(doc)
