"""Small frozen records shared by the model, evaluator, CLI and bench."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RankedDoc:
    """One reranked document: its position in the caller's list, its score, and optionally the document as the
    caller gave it (a string or a {"text", "title"} mapping)."""

    index: int
    score: float
    document: Any = None

    _KEYS = {"corpus_id": "index", "index": "index", "score": "score", "text": "document", "document": "document"}

    def __getitem__(self, key: str) -> Any:
        """Read as a dict too: sentence-transformers' ``rank`` keys (``corpus_id``, ``score``, ``text``, the last only
        when documents were returned) and fastrank's (``index``, ``document``), so ported code keeps working."""
        field_name = self._KEYS.get(key)
        if field_name is None or (field_name == "document" and self.document is None):
            raise KeyError(key)
        return getattr(self, field_name)

    def to_dict(self) -> dict[str, Any]:
        """``{"index", "score"}``, plus ``document`` when it was kept: what ``Reranker.rerank`` returns."""
        out: dict[str, Any] = {"index": self.index, "score": self.score}
        if self.document is not None:
            out["document"] = self.document
        return out


@dataclass(frozen=True)
class EvalResult:
    """Reranking metrics over a set of queries, with how many were evaluated and how many were skipped and why."""

    metrics: dict[str, float]
    num_queries: int
    num_skipped_no_positive: int = 0
    num_skipped_no_candidates: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-ready values (what ``fastrank eval --json`` prints)."""
        return asdict(self)
