"""EmbeddingModel: a sentence-transformers-style bi-encoder loaded with transformers directly.

Used for first-stage retrieval, hard-negative mining and as a baseline. It honours the directory's pooling config
(``1_Pooling/config.json``: cls / mean / max / mean-sqrt-len), ``Normalize`` module and ``max_seq_length``, so
embeddings equal sentence-transformers' ``encode`` without depending on sentence-transformers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fastrank.batching import PairEncoder, run_batches
from fastrank.documents import Document, check_documents, document_parts, document_text
from fastrank.errors import ModelLoadError
from fastrank.model import DEFAULT_BASE, resolve_model_path, trained_head_labels, weight_dtype

logger = logging.getLogger(__name__)

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len")


def _read_st_config(location: Path) -> tuple[str, bool, int | None]:
    """(pooling mode, normalize, max_seq_length) from a sentence-transformers directory; mean/False/None if absent."""
    pooling, normalize, max_len = "mean", False, None
    modules_file = location / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        for mod in modules:
            kind = mod.get("type", "")
            if kind.endswith("Normalize"):
                normalize = True
            if kind.endswith("Pooling"):
                cfg_file = location / mod.get("path", "") / "config.json"
                if cfg_file.is_file():
                    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
                    modes = [m for m in POOLING_MODES if cfg.get(f"pooling_mode_{m}_token" if m == "cls" else
                                                                 f"pooling_mode_{m}_tokens")]
                    if len(modes) != 1:
                        raise ModelLoadError(f"{cfg_file}: exactly one pooling mode is supported, found {modes}")
                    pooling = modes[0]
    st_cfg = location / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_len = json.loads(st_cfg.read_text(encoding="utf-8")).get("max_seq_length")
    return pooling, normalize, max_len


class EmbeddingModel:
    """Encode texts into fixed-size vectors with a bi-encoder (default: all-MiniLM-L6-v2, bundled offline)."""

    def __init__(self, model_name_or_path: str | Path = DEFAULT_BASE, *, max_length: int | None = None,
                 pooling: str | None = None, normalize: bool | None = None, device: str | None = None,
                 dtype: str = "float32") -> None:
        from transformers import AutoModel, AutoTokenizer

        cast = weight_dtype(dtype)  # float32 | float16 | bfloat16 | auto (the checkpoint's), as for CrossEncoder
        location = resolve_model_path(model_name_or_path)
        path = Path(location)
        st_pooling, st_normalize, st_max = _read_st_config(path) if path.is_dir() else ("mean", False, None)
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
        self._encoder = PairEncoder(self.tokenizer.backend_tokenizer, self.max_length, self.tokenizer.pad_token_id or 0)

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
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "max":
            return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        summed = (hidden * m).sum(dim=1)
        counts = m.sum(dim=1).clamp(min=1e-9)
        return summed / (counts if self.pooling == "mean" else counts.sqrt())

    @torch.inference_mode()
    def encode(self, texts: Sequence[Document], batch_size: int = 64,
               show_progress_bar: bool | None = None) -> np.ndarray:
        """Float32 embeddings (n, dim) in input order; texts are length-sorted into batches. A titled document
        (``{"title", "text"}``) is embedded as the text a reranker reads: title, the tokenizer's separator, text."""
        texts = check_documents(texts, "texts")
        texts = [document_text(t, self._encoder.separator) for t in texts]
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encoded = self._encoder.encode(texts)
        if show_progress_bar is None:
            show_progress_bar = len(texts) > 20 * batch_size
        def embed(arrays: dict[str, np.ndarray]) -> np.ndarray:
            batch = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
            emb = self._pool(self.model(**batch).last_hidden_state.float(), batch["attention_mask"])
            if self.normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
            return emb.cpu().numpy()

        with tqdm(total=len(texts), desc="Encoding", unit="text", disable=not show_progress_bar) as bar:
            return run_batches(encoded, embed, batch_size, None, self._encoder.pad_token_id, self.dimension,
                               on_batch=bar.update)

    def similarity(self, queries: Sequence[str], documents: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Cosine (or dot, if not normalized) similarity of each (query, document) pair, shape (n,)."""
        if isinstance(queries, str) or isinstance(documents, str) or len(queries) != len(documents):
            raise ValueError("similarity takes two lists of equal length (pair i = queries[i], documents[i]); got "
                             + ("a single string" if isinstance(queries, str) or isinstance(documents, str)
                                else f"{len(queries)} queries and {len(documents)} documents"))
        q = self.encode(queries, batch_size)
        d = self.encode(documents, batch_size)
        return np.einsum("ij,ij->i", q, d)

    def predict(self, pairs: Sequence[Sequence[Any]], batch_size: int = 64,
                show_progress_bar: bool | None = None, **_: object) -> np.ndarray:
        """Score pairs by embedding similarity: lets the reranking evaluator measure the first stage alone."""
        from fastrank.batching import check_pairs

        sep = self._encoder.separator  # a titled document is embedded as the text a reranker reads (as in encode)
        pairs = [(q, document_text(d, sep)) for q, d in check_pairs(pairs)]
        queries = sorted({q for q, _ in pairs})
        docs = sorted({d for _, d in pairs})
        qv = dict(zip(queries, self.encode(queries, batch_size, show_progress_bar)))
        dv = dict(zip(docs, self.encode(docs, batch_size, show_progress_bar)))
        return np.array([float(qv[q] @ dv[d]) for q, d in pairs], dtype=np.float32)


class CachedEmbedding:
    """An embedding model whose ``encode`` remembers every text's vector, so a text is embedded once however often it
    comes back (a corpus searched for several query sets, a training list's documents in every epoch). Everything
    else is the wrapped model's."""

    def __init__(self, model) -> None:
        self.model = model
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def __getattr__(self, name: str):
        if name in ("model", "_cache"):  # not set yet (copy / unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.model, name)

    def encode(self, texts: Sequence[Document], batch_size: int = 64,
               show_progress_bar: bool | None = None) -> np.ndarray:
        """Float32 embeddings (n, dim) in input order; only texts (or titled documents) not seen before reach the
        model."""
        texts = check_documents(texts, "texts")
        if not texts:  # the model's own empty result
            return self.model.encode(texts, batch_size, show_progress_bar)
        keys = [document_parts(t) for t in texts]  # (title, text): hashable, and a blank title is no title
        todo: dict[tuple[str, str], Document] = {}
        for key, t in zip(keys, texts):
            if key not in self._cache:
                todo.setdefault(key, t)
        if todo:
            self._cache.update(zip(todo, self.model.encode(list(todo.values()), batch_size, show_progress_bar)))
        return np.stack([self._cache[k] for k in keys])
