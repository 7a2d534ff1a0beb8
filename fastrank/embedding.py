"""EmbeddingModel: a sentence-transformers-style bi-encoder loaded with transformers directly.

Used for first-stage retrieval, hard-negative mining and as a baseline. It honours the directory's pooling config
(``1_Pooling/config.json``: cls / mean / max / mean-sqrt-len / weightedmean / lasttoken, ``include_prompt``),
``Normalize`` module, ``max_seq_length`` and saved prompts (``encode_query`` / ``encode_document`` pick the
``query`` / ``document`` prompt as sentence-transformers 6 does), so embeddings equal sentence-transformers' without
depending on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fastrank.batching import PairEncoder, check_positive_int, run_batches
from fastrank.documents import Document, check_documents, document_parts, document_text
from fastrank.errors import ModelLoadError
from fastrank.io import model_location
from fastrank.model import DEFAULT_BASE, resolve_model_path, trained_head_labels, weight_dtype
from fastrank.progress import bar_disabled

logger = logging.getLogger(__name__)

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len", "weightedmean", "lasttoken")
# sentence-transformers before 6 saved the pooling mode as one of these flags
_LEGACY_POOLING_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                         "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
                         "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


_MODULES = ("Transformer", "Pooling", "Normalize")  # the sentence-transformers modules EmbeddingModel runs


def _read_st_config(location: str) -> tuple[str, bool, int | None, bool, dict[str, Any]]:
    """(pooling mode, normalize, max_seq_length, include_prompt, config_sentence_transformers.json) of a
    sentence-transformers model, a local folder or a hub id (whose files were never read: a hub model pooled with
    mean, unnormalized, without its prompts); mean/False/None/True/{} where absent (its saved prompts count only
    with modules.json, as sentence-transformers reads them). Files are read as a cross-encoder's are (``_st_file``)."""
    from fastrank.model import _st_file, module_kind

    pooling, normalize, max_len, include_prompt, st_config = "mean", False, None, True, {}
    modules = _st_file(location, "modules.json", {})
    if isinstance(modules, list):
        st_config = _st_file(location, "config_sentence_transformers.json", {}) or {}
        others = [m.get("type") if isinstance(m, dict) else m for m in modules if module_kind(m) not in _MODULES]
        if others:  # a Dense projection, a StaticEmbedding, ...: embeddings without them would be another model's
            raise ModelLoadError(f"{location}/modules.json holds modules fastrank does not run: {others}; fastrank "
                                 "embeds with a transformer, one Pooling and an optional Normalize (use "
                                 "sentence-transformers' SentenceTransformer for this model)")
        for mod in modules:
            kind = module_kind(mod)
            if kind == "Normalize":
                normalize = True
            if kind == "Pooling":
                name = "/".join(p for p in (mod.get("path", ""), "config.json") if p)
                cfg = _st_file(location, name, {})
                if isinstance(cfg, dict):
                    pooling = _pooling_mode(cfg, Path(location) / name)
                    include_prompt = bool(cfg.get("include_prompt", True))
    st_cfg = _st_file(location, "sentence_bert_config.json", {})
    if isinstance(st_cfg, dict):
        max_len = st_cfg.get("max_seq_length")
    return pooling, normalize, max_len, include_prompt, st_config if isinstance(st_config, dict) else {}


def _pooling_mode(cfg: dict[str, Any], path: Path) -> str:
    """The pooling mode of a Pooling module's config: sentence-transformers 6's ``pooling_mode`` (a name, or a list
    of one) or older versions' ``pooling_mode_*`` flags (none set: mean, as there). Several modes concatenated, or a
    mode fastrank does not know, is a ModelLoadError."""
    if "pooling_mode" in cfg:
        modes = cfg["pooling_mode"]
        modes = list(modes) if isinstance(modes, (list, tuple)) else [modes]
        modes = ["mean_sqrt_len" if m == "mean_sqrt_len_tokens" else m for m in modes]
    else:
        flags = sorted(k for k, v in cfg.items() if k.startswith("pooling_mode_") and v)
        modes = [_LEGACY_POOLING_FLAGS.get(k, f"unknown: {k}") for k in flags] or ["mean"]
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ModelLoadError(f"{path}: pooling {modes} is not supported; fastrank pools with exactly one of "
                             f"{', '.join(POOLING_MODES)}")
    return modes[0]


# sentence-transformers' embedding models always hold these prompt names (empty unless saved): encode_query takes
# "query", encode_document "document"
_DEFAULT_PROMPTS = {"query": None, "document": None}


class EmbeddingModel:
    """Encode texts into fixed-size vectors with a bi-encoder (default: all-MiniLM-L6-v2, bundled offline).

    ``prompts`` / ``default_prompt_name`` as in sentence-transformers' ``SentenceTransformer``: merged over the
    model's saved ones; ``encode`` applies the default prompt, ``encode_query`` the ``query`` prompt and
    ``encode_document`` the ``document`` one, unless a call names another. Queries and
    documents are embedded through those two wherever fastrank retrieves or mines."""

    def __init__(self, model_name_or_path: str | Path = DEFAULT_BASE, *, max_length: int | None = None,
                 pooling: str | None = None, normalize: bool | None = None, device: str | None = None,
                 dtype: str = "float32", prompts: dict[str, str] | None = None,
                 default_prompt_name: str | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        from fastrank.model import merge_prompts

        model_name_or_path = model_location(model_name_or_path, "model_name_or_path")
        max_length = check_positive_int(max_length, "max_length", optional=True)
        cast = weight_dtype(dtype)  # float32 | float16 | bfloat16 | auto (the checkpoint's), as for CrossEncoder
        location = resolve_model_path(model_name_or_path)
        st_pooling, st_normalize, st_max, self.include_prompt, st_config = _read_st_config(location)
        self.prompts, self.default_prompt_name = merge_prompts(prompts, default_prompt_name, st_config,
                                                               model_name_or_path, defaults=_DEFAULT_PROMPTS)
        self.pooling = pooling or st_pooling
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        self.normalize = st_normalize if normalize is None else normalize
        try:
            self.model = AutoModel.from_pretrained(location)
            self.tokenizer = AutoTokenizer.from_pretrained(location)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load embedding model {str(model_name_or_path)!r}: {exc}") from exc
        if trained_head_labels(self.model.config) is not None:  # a cross-encoder: trained to score pairs, not to
            logger.warning("%s is a %s checkpoint (a cross-encoder, it seems): its pooled outputs are not trained as "
                           "embeddings, so similarities will be poor; use a bi-encoder (default all-MiniLM-L6-v2)",
                           model_name_or_path, ", ".join(self.model.config.architectures))  # embed texts
        limit = int(min(self.model.config.max_position_embeddings, self.tokenizer.model_max_length))
        self.max_length = min(max_length or st_max or limit, limit)
        self.name_or_path = str(model_name_or_path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(device=self.device, dtype=cast).eval()
        self._encoder = PairEncoder.for_tokenizer(self.tokenizer, self.max_length)

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def weights_sha256(self) -> str:
        """sha256 of the weights as loaded (not of the path, whose files may be replaced): what identifies this model
        in the corpus-embedding cache. Computed once."""
        if "_weights_sha256" not in self.__dict__:
            from fastrank.export.manifest import source_sha256

            self.__dict__["_weights_sha256"] = source_sha256(None, self.model.state_dict())[0]
        return self.__dict__["_weights_sha256"]

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        if self.pooling == "cls":  # the first token pooled: after the prompt when it is left out, as there
            return hidden[rows, mask.to(torch.int64).argmax(dim=1)]
        if self.pooling == "lasttoken":  # the last token pooled (batches are padded on the right); none: zeros
            flipped, at = mask.to(torch.int64).flip(1).max(dim=1)
            last = torch.where(flipped == 0, 0, hidden.shape[1] - 1 - at)
            return hidden[rows, last] * flipped.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "weightedmean":  # token i of the sequence weighs i + 1 (a left-out prompt keeps its place)
            weights = m * torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype).view(1, -1, 1)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        if self.pooling == "max":
            return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        summed = (hidden * m).sum(dim=1)
        counts = m.sum(dim=1).clamp(min=1e-9)
        return summed / (counts if self.pooling == "mean" else counts.sqrt())

    def _prompt_tokens(self, prompt: str) -> int:
        """Leading tokens a prompt takes (the opening special token with it, not a closing one), which pooling
        leaves out for a model saved with ``include_prompt: false``, as sentence-transformers counts them."""
        ids = self._encoder.tokenizer.encode(prompt).ids
        special = set(self.tokenizer.all_special_ids)
        return len(ids) - 1 if ids and ids[-1] in special else len(ids)

    @torch.inference_mode()
    def encode(self, texts: Sequence[Document], batch_size: int = 64, show_progress_bar: bool | None = None, *,
               prompt_name: str | None = None, prompt: str | None = None) -> np.ndarray:
        """Float32 embeddings (n, dim) in input order; texts are length-sorted into batches. A titled document
        (``{"title", "text"}``) is embedded as the text a reranker reads: title, the tokenizer's separator, text.
        ``prompt`` (or the prompt named ``prompt_name``; by default the model's default prompt) opens every text."""
        from fastrank.model import pick_prompt

        batch_size = check_positive_int(batch_size, "batch_size")
        prompt = pick_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name, "EmbeddingModel") or ""
        texts = check_documents(texts, "texts")
        texts = [prompt + document_text(t, self._encoder.separator) for t in texts]
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encoded = self._encoder.encode(texts)
        if show_progress_bar is None:
            show_progress_bar = len(texts) > 20 * batch_size
        skip = self._prompt_tokens(prompt) if prompt and not self.include_prompt else 0

        def embed(arrays: dict[str, np.ndarray]) -> np.ndarray:
            batch = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
            pooled = batch["attention_mask"].clone()
            pooled[:, :skip] = 0  # the prompt's tokens, for a model that pools without them
            emb = self._pool(self.model(**batch).last_hidden_state.float(), pooled)
            if self.normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
            return emb.cpu().numpy()

        with tqdm(total=len(texts), desc="Encoding", unit="text", disable=bar_disabled(show_progress_bar)) as bar:
            return run_batches(encoded, embed, batch_size, None, self._encoder.pad_token_id, self.dimension,
                               on_batch=bar.update)

    def encode_query(self, texts: Sequence[Document], batch_size: int = 64, show_progress_bar: bool | None = None,
                     *, prompt_name: str | None = None, prompt: str | None = None) -> np.ndarray:
        """``encode`` for queries: with ``query_prompt`` unless a call names another."""
        if prompt_name is None and prompt is None:
            prompt = self.query_prompt
        return self.encode(texts, batch_size, show_progress_bar, prompt_name=prompt_name, prompt=prompt)

    def encode_document(self, texts: Sequence[Document], batch_size: int = 64,
                        show_progress_bar: bool | None = None, *, prompt_name: str | None = None,
                        prompt: str | None = None) -> np.ndarray:
        """``encode`` for documents: with ``document_prompt`` unless a call names another."""
        if prompt_name is None and prompt is None:
            prompt = self.document_prompt
        return self.encode(texts, batch_size, show_progress_bar, prompt_name=prompt_name, prompt=prompt)

    @property
    def query_prompt(self) -> str:
        """The prompt ``encode_query`` applies: the ``query`` prompt (always there, empty unless saved or given)."""
        return self.prompts["query"]

    @property
    def applied_prompts(self) -> dict[str, str]:
        """The prompts put before queries and documents (``query_prompt``, ``document_prompt``), as a command's
        JSON summary reports them."""
        return {"query": self.query_prompt, "document": self.document_prompt}

    @property
    def document_prompt(self) -> str:
        """The prompt ``encode_document`` applies: the ``document`` prompt (always there, empty unless saved or
        given). sentence-transformers looks for ``passage`` and ``corpus`` only after ``document``, which its
        models always hold too, so a saved ``passage`` prompt is not applied there either."""
        return self.prompts["document"]

    def similarity(self, queries: Sequence[str], documents: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Cosine (or dot, if not normalized) similarity of each (query, document) pair, shape (n,)."""
        if isinstance(queries, str) or isinstance(documents, str) or len(queries) != len(documents):
            raise ValueError("similarity takes two lists of equal length (pair i = queries[i], documents[i]); got "
                             + ("a single string" if isinstance(queries, str) or isinstance(documents, str)
                                else f"{len(queries)} queries and {len(documents)} documents"))
        q = self.encode_query(queries, batch_size)
        d = self.encode_document(documents, batch_size)
        return np.einsum("ij,ij->i", q, d)

    def predict(self, pairs: Sequence[Sequence[Any]], batch_size: int = 64, show_progress_bar: bool | None = None,
                prompt_name: str | None = None, prompt: str | None = None, **_: object) -> np.ndarray:
        """Score pairs by embedding similarity: lets the reranking evaluator measure the first stage alone. Queries
        are embedded with ``encode_query`` (``prompt_name`` / ``prompt`` replace its prompt), documents with
        ``encode_document``."""
        from fastrank.batching import check_pairs

        sep = self._encoder.separator  # a titled document is embedded as the text a reranker reads (as in encode)
        pairs = [(q, document_text(d, sep)) for q, d in check_pairs(pairs)]
        queries = sorted({q for q, _ in pairs})
        docs = sorted({d for _, d in pairs})
        qv = dict(zip(queries, self.encode_query(queries, batch_size, show_progress_bar, prompt_name=prompt_name,
                                                 prompt=prompt)))
        dv = dict(zip(docs, self.encode_document(docs, batch_size, show_progress_bar)))
        return np.array([float(qv[q] @ dv[d]) for q, d in pairs], dtype=np.float32)


class CachedEmbedding:
    """An embedding model whose ``encode`` remembers every text's vector, so a text is embedded once however often it
    comes back (a corpus searched for several query sets, a training list's documents in every epoch). Everything
    else is the wrapped model's."""

    def __init__(self, model) -> None:
        self.model = model
        self._cache: dict[tuple, np.ndarray] = {}

    def __getattr__(self, name: str):
        if name in ("model", "_cache"):  # not set yet (copy / unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.model, name)

    def encode(self, texts: Sequence[Document], batch_size: int = 64, show_progress_bar: bool | None = None,
               **prompt: Any) -> np.ndarray:
        """Float32 embeddings (n, dim) in input order; only texts (or titled documents) not seen before reach the
        model."""
        return self._cached("encode", texts, batch_size, show_progress_bar, prompt)

    def encode_query(self, texts: Sequence[Document], batch_size: int = 64, show_progress_bar: bool | None = None,
                     **prompt: Any) -> np.ndarray:
        return self._cached("encode_query", texts, batch_size, show_progress_bar, prompt)

    def encode_document(self, texts: Sequence[Document], batch_size: int = 64,
                        show_progress_bar: bool | None = None, **prompt: Any) -> np.ndarray:
        return self._cached("encode_document", texts, batch_size, show_progress_bar, prompt)

    def _cached(self, method: str, texts: Sequence[Document], batch_size: int, show_progress_bar: bool | None,
                prompt: dict[str, Any]) -> np.ndarray:
        """The model's ``method`` (its ``encode`` if it has no such method), each text embedded once per method and
        prompt: a query and a document of the same text may take different prompts."""
        encode = getattr(self.model, method, None) or self.model.encode
        texts = check_documents(texts, "texts")
        options = {**_options(batch_size, show_progress_bar), **prompt}
        if not texts:  # the model's own empty result
            return encode(texts, **options)
        how = (method, tuple(sorted(prompt.items())))
        keys = [(how, *document_parts(t)) for t in texts]  # (title, text): hashable, a blank title is no title
        todo: dict[tuple, Document] = {}
        for key, t in zip(keys, texts):
            if key not in self._cache:
                todo.setdefault(key, t)
        if todo:
            self._cache.update(zip(todo, encode(list(todo.values()), **options)))
        return np.stack([self._cache[k] for k in keys])


def role_prompts(query_prompt: str | None = None, document_prompt: str | None = None) -> dict[str, str] | None:
    """``EmbeddingModel(prompts=...)`` from the CLI's ``--query-prompt`` / ``--document-prompt`` (e5's ``"query: "``
    and ``"passage: "``); None when neither is given (the model's saved prompts)."""
    given = {"query": query_prompt, "document": document_prompt}
    return {k: v for k, v in given.items() if v is not None} or None


def _options(batch_size: int, show_progress_bar: bool | None) -> dict[str, Any]:
    """Keywords for any embedding model's encode methods: by name (sentence-transformers' ``encode_query`` takes
    ``prompt_name`` second), ``show_progress_bar`` only when given (an ``encode(texts, batch_size)`` will do)."""
    return {"batch_size": batch_size, **({} if show_progress_bar is None else {"show_progress_bar": show_progress_bar})}


def encode_queries(model: Any, texts: Sequence[Document], batch_size: int = 64,
                   show_progress_bar: bool | None = None) -> np.ndarray:
    """Query embeddings from any embedding model (fastrank's, sentence-transformers', one with only ``encode``):
    its ``encode_query`` (the query prompt) if it has one, else ``encode``."""
    encode = getattr(model, "encode_query", None) or model.encode
    return encode(texts, **_options(batch_size, show_progress_bar))


def encode_documents(model: Any, texts: Sequence[Document], batch_size: int = 64,
                     show_progress_bar: bool | None = None) -> np.ndarray:
    """Document embeddings from any embedding model: its ``encode_document`` if it has one, else ``encode``."""
    encode = getattr(model, "encode_document", None) or model.encode
    return encode(texts, **_options(batch_size, show_progress_bar))
