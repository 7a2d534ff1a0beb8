"""Small records shared by the model, evaluator, CLI and bench: a ranked document, an evaluation result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class RankedDoc(dict):
    """One reranked document, as the dict sentence-transformers' ``rank`` returns: ``corpus_id`` (its position in
    the caller's list), ``score``, and ``text`` (the document as the caller gave it, a string or a
    ``{"text", "title"}`` mapping) only when documents were returned. So ported code can ``json.dumps`` it, build a
    DataFrame from it or compare it with a dict. fastrank's names read as attributes (``.index``, ``.score``,
    ``.document``) and as keys (``r["index"]``, ``r["document"]``)."""

    _ALIASES = {"index": "corpus_id", "document": "text"}

    def __init__(self, index: int, score: float, document: Any = None) -> None:
        super().__init__(corpus_id=index, score=score)
        if document is not None:
            self["text"] = document

    def __getitem__(self, key: Any) -> Any:
        try:
            return super().__getitem__(self._ALIASES.get(key, key))
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: Any) -> bool:
        return super().__contains__(self._ALIASES.get(key, key))

    def get(self, key: Any, default: Any = None) -> Any:
        """``dict.get``; fastrank's names ``index`` / ``document`` read sentence-transformers' ``corpus_id`` /
        ``text``, which the dict holds."""
        return super().get(self._ALIASES.get(key, key), default)

    def copy(self) -> RankedDoc:
        """A RankedDoc of the same index, score and document (``dict.copy`` would return a plain dict)."""
        return RankedDoc(self.index, self.score, self.document)

    def __repr__(self) -> str:
        return f"RankedDoc({super().__repr__()})"

    @property
    def index(self) -> int:
        return super().__getitem__("corpus_id")

    @property
    def score(self) -> float:
        return super().__getitem__("score")

    @property
    def document(self) -> Any:
        return self.get("text")

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
