"""``Reranker``: score and rank documents for a query with any backend, through one batching path.

Tokenization, length-sorted token-budget batching, long-document windows, activation, ordering and top-k live
here, once; a backend only turns padded batches into logits (``fastrank.backends``). ``Reranker(path)`` reads an
exported artifact's ``fastrank.json`` to pick its backend, or loads a plain checkpoint with PyTorch.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.backends.base import Backend, get_backend
from fastrank.batching import (EncodedPairs, Pair, PairEncoder, bad_text_named_in, check_pairs, check_positive_int,
                               distinct_pairs, is_integer, is_single_pair, run_batches)
from fastrank.documents import Document, check_documents, is_blank
from fastrank.errors import FastrankError, ModelLoadError
from fastrank.export.manifest import cpu_features, read_manifest
from fastrank.fusion import check_fusion_input, fuse_scores
from fastrank.io import model_location
from fastrank.types import RankedDoc

logger = logging.getLogger(__name__)

LONG_DOCUMENTS = ("truncate", "windows")
# rerank()'s model when none is given: a general-purpose MS MARCO cross-encoder from the Hugging Face Hub (downloaded
# on first use), the baseline a model fine-tuned on the user's data is meant to beat.
DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L6-v2"


def _activate(logits: np.ndarray, name: str) -> np.ndarray:
    if name == "sigmoid":
        return np.exp(-np.logaddexp(0.0, -logits)).astype(np.float32)  # overflow-free 1 / (1 + e^-x)
    if name == "softmax":
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
    if name == "identity":
        return logits
    raise ValueError(f"activation must be sigmoid, softmax or identity, got {name!r}")


def relevance(logits: np.ndarray, activation: str) -> np.ndarray:
    """One relevance score per pair from fp32 logits (n, num_labels): a one-logit model's logit under
    ``activation``; for several labels (class ids, ``--loss ce``) the softmax probability of the last class, the most
    relevant grade. The one rule every ranking path (rerank, rank, eval, the service, training's evaluation) uses."""
    logits = np.asarray(logits, dtype=np.float32).reshape(len(logits), -1)
    if logits.shape[1] == 1:
        return _activate(logits, activation)[:, 0]
    return _activate(logits, "softmax")[:, -1]


def relevance_order(logits: np.ndarray) -> np.ndarray:
    """A sort key that orders pairs as ``relevance`` does but never saturates: a one-logit model's logit (every
    activation is increasing), for several labels the last class's log-odds. fp32 sigmoid rounds every logit above
    ~17 to 1.0 (and 12.0 and 12.004 to one value), which would tie documents the model tells apart."""
    logits = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    if logits.shape[1] == 1:
        return logits[:, 0]
    others = logits[:, :-1]
    top = others.max(axis=1)
    return logits[:, -1] - (top + np.log(np.exp(others - top[:, None]).sum(axis=1)))


def fusion_relevance(logits: np.ndarray, activation: str) -> np.ndarray:
    """``relevance`` for score fusion, which z-scores it per query: the same values up to one constant (which
    z-scores ignore), in float64 and without saturating. A sigmoid of log-odds (a one-logit sigmoid model, or the
    last class's softmax probability) becomes ``p - 1 = -sigmoid(-x)`` when every log-odds is above 0, which keeps
    its precision where ``p`` rounds to 1.0 (fp32 above ~17, float64 above ~37): a list of confident scores is
    fused by what the model tells apart, not as a tie that leaves the first stage alone."""
    logits = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    if logits.shape[1] == 1 and activation == "identity":
        return logits[:, 0]
    if logits.shape[1] == 1 and activation != "sigmoid":
        return relevance(logits, activation).astype(np.float64)
    log_odds = relevance_order(logits)
    if log_odds.size and log_odds.min() > 0:
        return -np.exp(-np.logaddexp(0.0, log_odds))
    return np.exp(-np.logaddexp(0.0, -log_odds))


def artifact_encoder(path: Path, manifest: dict[str, Any]) -> PairEncoder:
    """The pair encoder of an exported artifact: its tokenizer.json with the manifest's max_length, pad id and the
    prompt that opens each query (``query_prompt``, the model's default prompt at export) and the tokenizer's
    truncation side (``truncation_side``; artifacts from before it was recorded cut on the right)."""
    from tokenizers import Tokenizer

    file = path / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises a bare Exception for missing or malformed files
        raise ModelLoadError(f"could not read the tokenizer {str(file)!r}: {exc}") from exc
    return PairEncoder(tokenizer, int(manifest["max_length"]), int(manifest.get("pad_token_id", 0)),
                       manifest.get("query_prompt") or "", manifest.get("truncation_side") or "right")


def _reranker_from(cls: type[Reranker], options: dict[str, Any]) -> Reranker:
    """A ``Reranker`` (or subclass) built again from the options it was made with (how a pickled one is loaded)."""
    return cls(**options)


def auto_backend(path: str, manifest: dict[str, Any] | None) -> str:
    """``backend="auto"``: a TensorRT engine that fits this GPU and TensorRT, else the artifact's format (torch for
    a plain checkpoint). Skipping an artifact's engines is logged with the reason."""
    if manifest is None:
        return "torch"
    engines = (manifest.get("tensorrt") or {}).get("engines")
    if engines:
        from fastrank.backends.tensorrt_backend import gpu_info
        from fastrank.export.tensorrt import select_engine

        entry, reason = select_engine(engines, *gpu_info())
        if entry is not None:
            return "tensorrt"
        logger.warning("%s: running the ONNX model instead of a TensorRT engine: %s", path, reason)
    return manifest["format"]


def check_rerank_input(query: str, documents: Sequence[Document], top_k: int | None = None) -> list[Document]:
    """Validate a rerank request; bad input raises TypeError/ValueError saying what was wrong and what is accepted.
    A document is a string or a mapping with a ``text`` string and an optional ``title`` (``fastrank.documents``)."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if is_blank(query):
        raise ValueError("query is empty: give the text to rank the documents against")
    docs = check_documents(documents)
    if top_k is not None and (not is_integer(top_k) or top_k < 0):
        raise ValueError(f"top_k must be a non-negative integer or None, got {top_k!r}")
    return docs


def ranked(scores: np.ndarray, docs: Sequence[Document], top_k: int | None = None,
           return_documents: bool = True, key: np.ndarray | tuple[np.ndarray, ...] | None = None
           ) -> list[dict[str, Any]]:
    """``[{"index", "score", "document"}]`` best first by ``key`` (default: the scores; ``relevance_order`` of the
    logits keeps apart what rounded scores tie; a tuple of keys: each breaks the ties of the one before); ties keep
    the caller's order."""
    keys = (scores if key is None else key,) if not isinstance(key, tuple) else key
    order = np.lexsort([-np.asarray(k) for k in reversed(keys)])[:top_k]  # stable: the caller's order last
    return [RankedDoc(int(i), float(scores[i]), docs[i] if return_documents else None).to_dict() for i in order]


DEFAULT_MAX_TOKENS = 2048
DEFAULT_BATCH_SIZE = 32
DEFAULT_SESSIONS_BATCH_SIZE = 8


class Reranker:
    """Scores (query, document) pairs with an exported artifact or a checkpoint.

    Args:
        path_or_id: an artifact directory from ``fastrank export`` (has ``fastrank.json``), a checkpoint directory,
            or a hub id (loaded with PyTorch; may download).
        backend: ``auto`` (a TensorRT engine of the artifact that fits this GPU and TensorRT, else the artifact's
            format, else ``torch``; ``auto_backend``) or a registered backend name.
        num_threads: threads of this model's backend (onnxruntime intra-op threads; for torch, set per call and
            restored). None = the backend's default.
        sessions: onnx on CPU only: sessions that score different batches at the same time, sharing ``num_threads``
            (see ``OnnxBackend``). ``auto``: 2 for an int8 model on a CPU with 2 or more threads, else 1 (measured:
            ``fastrank.backends.onnx_backend.auto_sessions``).
        batch_size: pairs per forward pass at most; None = 32 with one session, 8 with several (small
            batches keep the sessions evenly busy: measured +3% pairs/s against 32 on short pairs, none on long
            passages, 2 cores), capped at what a
            shape-bound backend (a TensorRT engine's profiles) was built for; a larger explicit value is an error.
        max_tokens: padded tokens per batch at most (batch x padded length); None = no budget. The default 2048
            keeps long-passage batches small enough to stay in cache (measured on 2 cores: +7% pairs/s on
            ~250-token pairs, +2% on ~40-token pairs against no budget); a pair longer than the budget still runs,
            alone.
        long_documents: ``truncate`` (a pair is cut at max_length) or ``windows``: a document longer than the
            window is cut into overlapping windows, every window is scored with the query, and the document's score
            is its best window's.
        window_stride: tokens shared by consecutive windows (the ``stride`` of Hugging Face tokenizers: overlap,
            not step); default a quarter of max_length, capped to what a window allows.
        providers: onnxruntime execution providers (ONNX backend only), e.g. ``["CUDAExecutionProvider"]``.
        backend_options: further keyword arguments of the backend's ``from_artifact``, e.g. for ``torch-cuda``
            ``{"precision": "bf16", "cuda_graphs": False}`` (see each backend's constructor).
    """

    def __init__(
        self,
        path_or_id: str | Path,
        backend: str = "auto",
        num_threads: int | None = None,
        sessions: int | str = "auto",
        batch_size: int | None = None,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        long_documents: str = "truncate",
        window_stride: int | None = None,
        providers: Sequence[str] | None = None,
        backend_options: dict[str, Any] | None = None,
    ) -> None:
        path_or_id = model_location(path_or_id, "path_or_id", "a checkpoint or artifact folder or a hub id")
        if long_documents not in LONG_DOCUMENTS:
            raise ValueError(f"long_documents must be one of {', '.join(LONG_DOCUMENTS)}, got {long_documents!r}")
        if long_documents != "windows" and window_stride is not None:  # before loading: a wrong call costs nothing
            raise ValueError("window_stride applies to long_documents='windows'; with 'truncate' a document is cut "
                             "at max_length and has no windows")
        batch_size = check_positive_int(batch_size, "batch_size", optional=True)
        max_tokens = check_positive_int(max_tokens, "max_tokens", optional=True)
        num_threads = check_positive_int(num_threads, "num_threads", optional=True)
        if sessions != "auto" and (not is_integer(sessions) or sessions < 1):
            raise ValueError(f"sessions must be 'auto' or a positive integer (an int or NumPy integer, not a bool), "
                             f"got {sessions!r}")
        sessions = sessions if sessions == "auto" else int(sessions)
        self.path = str(path_or_id)
        local = Path(path_or_id).expanduser()
        # what loading took that the Reranker does not keep (pickling builds it again from these and its batching)
        self._options = {"path_or_id": str(local.resolve()) if local.exists() else self.path, "backend": backend,
                         "num_threads": num_threads, "sessions": sessions, "providers": providers,
                         "backend_options": backend_options}
        self.manifest = read_manifest(local) if local.is_dir() else None
        name = backend
        if backend == "auto":
            name = auto_backend(self.path, self.manifest)
        options: dict[str, Any] = {"num_threads": num_threads}
        if providers is not None:
            options["providers"] = providers
        if backend_options is not None and not isinstance(backend_options, dict):
            raise TypeError("backend_options must be a dict of keyword arguments, got "
                            f"{type(backend_options).__name__}")
        options.update(backend_options or {})
        if name == "onnx":
            from fastrank.backends.onnx_backend import auto_sessions

            precision = (self.manifest or {}).get("precision")
            options["sessions"] = auto_sessions(num_threads, providers, precision) if sessions == "auto" else sessions
        elif sessions not in ("auto", 1):
            raise ValueError(f"sessions={sessions} needs the onnx backend on a CPU; the {name} backend runs one batch "
                             "at a time (use sessions=1 or 'auto')")
        cls = get_backend(name)
        target = local if local.exists() else path_or_id
        try:
            self.backend: Backend = cls.from_artifact(target, self.manifest, **options)
        except FastrankError as exc:
            if not (backend == "auto" and name == "tensorrt"):
                raise
            # the engine matched this GPU and TensorRT on paper but does not load (driver, CUDA torch, a damaged
            # file): "auto" promises a working model, so run the artifact's ONNX model and say why
            logger.warning("%s: running the ONNX model instead of a TensorRT engine: %s", self.path, exc)
            name = self.manifest["format"]
            self.backend = get_backend(name).from_artifact(target, self.manifest, **options)
        if self.manifest is not None:
            self.encoder = artifact_encoder(local, self.manifest)
            self.activation = self.manifest["activation"]
            self._warn_about(self.manifest)
        elif hasattr(self.backend, "model"):  # a plain checkpoint: the CrossEncoder's own encoder and activation
            self.encoder = self.backend.model.pair_encoder(self.backend.model.default_prompt)
            self.activation = self.backend.model.activation
        else:
            raise ModelLoadError(f"{self.path}: backend {name!r} needs an exported artifact (fastrank.json)")
        self.num_labels = int(self.backend.num_labels)
        limit = self.backend.max_batch
        if batch_size is None:
            several = len(self.backend.scorers()) > 1
            batch_size = DEFAULT_SESSIONS_BATCH_SIZE if several else DEFAULT_BATCH_SIZE
            batch_size = batch_size if limit is None else min(batch_size, limit)
        elif limit is not None and batch_size > limit:
            raise ValueError(f"batch_size={batch_size} is above the largest batch the {name} backend was built for "
                             f"({limit}); use batch_size <= {limit}, or build it for larger batches (TensorRT: "
                             f"fastrank export --max-batch-size {batch_size}; torch-cuda: max_batch)")
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.long_documents = long_documents
        if long_documents == "windows":
            if self.num_labels != 1:
                raise ValueError(f"long_documents='windows' needs a one-logit model; this one has {self.num_labels}")
            limit = self.encoder.max_window_overlap
            self.window_stride = min(self.encoder.max_length // 4, limit - 1) if window_stride is None else window_stride
            if not is_integer(self.window_stride) or not 0 <= self.window_stride < limit:
                raise ValueError(f"window_stride must be an integer in [0, {limit}) for max_length "
                                 f"{self.encoder.max_length} (an int or NumPy integer, not a bool), "
                                 f"got {window_stride!r}")
            self.window_stride = int(self.window_stride)
        else:
            self.window_stride = None

    def _warn_about(self, manifest: dict[str, Any]) -> None:
        if manifest.get("parity_failed"):
            logger.warning("%s was exported with allow_parity_failure and FAILED verification: %s", self.path,
                           "; ".join(manifest.get("parity", {}).get("failures", [])))
        quant = manifest.get("quantization") or {}
        if quant and not quant.get("reduce_range", True):
            here = cpu_features()["int8_profile"]
            if here in ("avx2", "avx512", "generic"):
                logger.warning("%s: int8 weights use the full 8-bit range (exported for %s); this CPU (%s) has no "
                               "VNNI, so int8 products may saturate. Re-export on this machine for a reduce_range "
                               "configuration.", self.path, quant.get("profile"), here)

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    def encode(self, pairs: Sequence[Pair]) -> tuple[EncodedPairs, np.ndarray | None]:
        """Tokenize pairs the way this reranker scores them: ``(encoded rows, owners)``; ``owners`` maps each row
        to its pair in ``windows`` mode (None when every pair is one row). Pass the scored rows to ``reduce``."""
        pairs = check_pairs(pairs)
        if self.long_documents == "windows" and pairs:
            return self.encoder.encode_windows(pairs, self.window_stride)
        return self.encoder.encode(pairs), None

    def run(self, encoded: EncodedPairs, max_tokens: int | None = None) -> np.ndarray:
        """Raw float32 logits of encoded rows, in their order, through the shared length-sorted batching."""
        return run_batches(encoded, self.backend.scorers(), self.batch_size,
                           self.max_tokens if max_tokens is None else max_tokens,
                           self.encoder.pad_token_id, self.num_labels,
                           pad_to_multiple_of=self.backend.pad_multiple)

    @staticmethod
    def reduce(rows: np.ndarray, owners: np.ndarray | None) -> np.ndarray:
        """One row of logits per pair: windows of a pair are contiguous, and a pair scores its best window."""
        if owners is None or not len(rows):
            return rows
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        return np.maximum.reduceat(rows, starts, axis=0)

    def __reduce__(self):
        """Pickled as its path and options (a loaded model and its sessions do not pickle), with the batching it has
        now: unpickling, in a worker process say, loads the model again, as ``Reranker(path, ...)`` would there."""
        windows = self.long_documents == "windows"
        now = {"batch_size": self.batch_size, "max_tokens": self.max_tokens, "long_documents": self.long_documents,
               "window_stride": self.window_stride if windows else None}
        return _reranker_from, (type(self), {**self._options, **now})

    def __copy__(self) -> Reranker:
        """A shallow copy sharing the loaded backend (``copy.copy``; pickling loads the model again)."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        return other

    def logits(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Raw float32 logits (n, num_labels) in the caller's order (windows: each document's best window). A pair
        given more than once is scored once: repeated documents cost nothing and tie exactly (scored in different
        rows of a batch, torch's kernels gave them logits ~1e-7 apart, which ordered copies at random)."""
        given = check_pairs(pairs)
        distinct, index = distinct_pairs(given)
        with bad_text_named_in(given):
            return self.every_logit(distinct)[index]

    def every_logit(self, pairs: Sequence[Pair]) -> np.ndarray:
        """``logits`` with every pair scored, a repeated one again: what a benchmark times."""
        encoded, owners = self.encode(pairs)
        if not len(encoded):
            return np.zeros((0, self.num_labels), dtype=np.float32)
        return self.reduce(self.run(encoded), owners)

    def activate(self, logits: np.ndarray, activation: str | None = None) -> np.ndarray:
        """Scores from fp32 logits: the model's activation (or ``activation``), flattened for one-logit models."""
        scores = _activate(logits, activation or self.activation)
        return scores[:, 0] if self.num_labels == 1 else scores

    def predict(self, pairs: Sequence[Pair], batch_size: int | None = None, activation: str | None = None,
                show_progress_bar: bool | None = None) -> np.ndarray:
        """Scores for (query, document) pairs: float32 (n,) for a one-logit model, (n, num_labels) otherwise; one
        pair given alone, ``("query", "document")``, gives a scalar (one row for several labels), as
        ``CrossEncoder.predict`` does.

        The activation (the model's, or ``activation``: sigmoid / softmax / identity) is applied last, to fp32
        logits. ``batch_size`` and ``show_progress_bar`` are accepted, in ``CrossEncoder.predict``'s order, so a
        ``RerankingEvaluator`` (or code written for ``CrossEncoder.predict``) can call it; batching is this
        Reranker's own (its ``batch_size`` / ``max_tokens``), and there is no progress bar.
        """
        check_positive_int(batch_size, "batch_size", optional=True)  # ignored, but a wrong value is a mistake
        if is_single_pair(pairs):
            return self.predict([tuple(pairs)], activation=activation)[0]
        return self.activate(self.logits(pairs), activation)

    def rerank(
        self, query: str, documents: Sequence[Document], top_k: int | None = None, return_documents: bool = True,
        first_stage_scores: Sequence[float] | None = None, fusion_weight: float = 0.0,
    ) -> list[dict[str, Any]]:
        """``[{"index", "score", "document"}]`` best first (``document`` only with return_documents: the caller's
        document as given, string or mapping). A document with a ``title`` is scored as its title and text joined by
        the tokenizer's separator (``fastrank.documents``), the way a model trained with titles read them.

        With ``first_stage_scores`` (one per document, e.g. the retriever's cosines) and ``fusion_weight`` > 0 the
        score is ``z(reranker) + fusion_weight * z(first stage)`` per query (``fastrank.fusion``): the retriever's
        topicality kept where the reranker was trained on same-topic candidates only. Those scores are z-scores
        within the request (a single document scores 0): they order one query's documents and cannot be compared
        across queries or thresholded. Empty ``documents`` gives ``[]``. Ties keep the caller's order.
        """
        docs = check_rerank_input(query, documents, top_k)
        first = check_fusion_input(first_stage_scores, len(docs), fusion_weight)  # checked even at weight 0
        if not docs:
            return []
        logits = self.logits([(query, d) for d in docs])
        if fusion_weight:
            fused = fuse_scores(fusion_relevance(logits, self.activation), first, fusion_weight)
            return ranked(fused, docs, top_k, return_documents, key=(fused, relevance_order(logits)))
        return ranked(relevance(logits, self.activation), docs, top_k, return_documents, key=relevance_order(logits))

    def warmup(self) -> int:
        """Prepare the backend's shapes now (CUDA graphs per bucket, one run per TensorRT profile) so the first
        requests are not slowed by it; ``fastrank serve`` calls this before it takes traffic. Returns the shapes
        prepared (0 on CPU backends, which have none)."""
        return self.backend.warmup()

    def describe(self) -> dict[str, Any]:
        """What runs: the model, the backend's own description, max_length, the prompt that opens each query and the
        long-document settings."""
        return {"model": self.path, **self.backend.describe(), "max_length": self.max_length,
                "query_prompt": self.encoder.query_prefix or None,
                "long_documents": self.long_documents, "window_stride": self.window_stride,
                "batch_size": self.batch_size, "max_tokens": self.max_tokens}

    def __repr__(self) -> str:
        return f"Reranker({self.path!r}, backend={self.backend.name!r})"


_CACHE: OrderedDict[tuple[Any, ...], Reranker] = OrderedDict()
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()
_LOADING: dict[tuple[Any, ...], list[Any]] = {}  # a lock per model being loaded (_cached_reranker)


def _cache_key(model: str | Path, backend: str) -> tuple[Any, ...]:
    """A model directory is keyed by its identity and its files' modification times, so a re-export or a checkpoint
    saved over it (fastrank renames a new directory into place) gets a fresh Reranker."""
    path = Path(model).expanduser()
    if path.is_dir():
        stamp = (path.stat().st_ino, tuple(sorted((f.name, f.stat().st_mtime_ns) for f in path.iterdir()
                                                  if f.is_file())))
        return (str(path.resolve()), stamp, backend)
    return (str(model), None, backend)


def _cached_reranker(model: str | Path, backend: str) -> Reranker:
    """The cached Reranker of ``(model, backend)``, loaded once. A model loads under a lock of its own, so calls for
    models already loaded (other threads of a web app) do not wait behind a slow load."""
    key = _cache_key(model, backend)
    with _CACHE_LOCK:
        reranker = _CACHE.get(key)
        if reranker is not None:
            _CACHE.move_to_end(key)
            return reranker
        loading = _LOADING.setdefault(key, [threading.Lock(), 0])  # [the model's lock, callers holding or awaiting]
        loading[1] += 1
    try:
        with loading[0]:
            with _CACHE_LOCK:
                reranker = _CACHE.get(key)  # loaded by the thread this one waited for
            if reranker is None:
                reranker = Reranker(model, backend=backend)
                with _CACHE_LOCK:
                    _CACHE[key] = reranker
                    while len(_CACHE) > _CACHE_SIZE:
                        _CACHE.popitem(last=False)
    finally:
        with _CACHE_LOCK:  # the lock goes with its last caller: after a failed load, a caller arriving while
            loading[1] -= 1  # another retries waits behind it instead of loading the same model beside it
            if not loading[1]:
                del _LOADING[key]
    return reranker


def clear_rerank_cache() -> int:
    """Drop the Rerankers that ``rerank()`` keeps loaded (up to ``_CACHE_SIZE`` models), freeing their memory;
    returns how many were dropped. The next ``rerank()`` of a model loads it again; a model another thread is
    loading at that moment is cached when its load ends."""
    with _CACHE_LOCK:
        dropped = len(_CACHE)
        _CACHE.clear()
    return dropped


def rerank(
    query: str, documents: Sequence[Document], *, model: str | Path | Reranker = DEFAULT_RERANKER,
    top_k: int | None = None, backend: str = "auto",
    return_documents: bool = True, first_stage_scores: Sequence[float] | None = None, fusion_weight: float = 0.0,
) -> list[dict[str, Any]]:
    """Rerank ``documents`` for ``query`` with ``model``; the loaded Reranker is cached per (model, backend), the
    last four used (``clear_rerank_cache`` frees them).
    ``first_stage_scores`` + ``fusion_weight``: see :meth:`Reranker.rerank`. ``model`` may be a loaded Reranker,
    used as it is; by default it is ``DEFAULT_RERANKER``, a general-purpose cross-encoder from the Hugging Face Hub
    (downloaded once; needs the ``train`` extra, as any checkpoint does)."""
    if isinstance(model, Reranker):
        return model.rerank(query, documents, top_k=top_k, return_documents=return_documents,
                            first_stage_scores=first_stage_scores, fusion_weight=fusion_weight)
    model = model_location(model, "model", "a checkpoint or artifact folder, a hub id, or a Reranker")
    reranker = _cached_reranker(model, backend)
    return reranker.rerank(query, documents, top_k=top_k, return_documents=return_documents,
                           first_stage_scores=first_stage_scores, fusion_weight=fusion_weight)
