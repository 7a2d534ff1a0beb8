"""``fastrank.Client``: a small, dependency-free client for a ``fastrank serve`` endpoint (or any service that speaks
the same Cohere/Jina-style ``POST /rerank``).

    client = fastrank.Client("http://localhost:8080")
    client.rerank("what is a cross-encoder?", ["a model that reads both texts", "a bridge"], top_n=1)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from fastrank.documents import DOCUMENT_KEYS, check_documents
from fastrank.errors import FastrankError


class ServiceError(FastrankError):
    """The service answered with an error status; ``status`` and the server's ``detail`` are kept."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail, self.retry_after = status, detail, retry_after


class Client:
    """Calls ``POST {base_url}/rerank``; retries 503 (queue full) up to ``retries`` times after Retry-After."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", timeout: float = 60.0, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries = timeout, retries

    def rerank(self, query: str, documents: Sequence[str | Mapping[str, str]], top_n: int | None = None,
               return_documents: bool = False, first_stage_scores: Sequence[float] | None = None,
               fusion_weight: float = 0.0) -> list[dict[str, Any]]:
        """``[{"index", "relevance_score", "document"?}]`` best first, as the service returns them.
        ``first_stage_scores`` + ``fusion_weight``: rank by z(reranker) + weight x z(first stage), as
        ``Reranker.rerank`` does. A document is a string or ``{"text", "title"?}`` (the service scores the title
        with the text; other keys stay with the caller)."""
        docs = [d if isinstance(d, str) else {k: d[k] for k in DOCUMENT_KEYS if d.get(k) is not None}
                for d in check_documents(documents)]
        body: dict[str, Any] = {"query": query, "documents": docs, "return_documents": return_documents}
        if top_n is not None:
            body["top_n"] = top_n
        if first_stage_scores is not None:
            body["first_stage_scores"] = [float(s) for s in first_stage_scores]
        if fusion_weight:
            body["fusion_weight"] = float(fusion_weight)
        return self._post("/rerank", body)["results"]

    def health(self) -> dict[str, Any]:
        """``GET /health``: status, model, backend and queue depth."""
        return self._request(urllib.request.Request(self.base_url + "/health"))

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        for attempt in range(self.retries + 1):
            try:
                return self._request(request)
            except ServiceError as exc:
                if exc.status != 503 or attempt == self.retries:
                    raise
                time.sleep(exc.retry_after or 0.5)
        raise AssertionError("unreachable")

    def _request(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", errors="replace")
            try:
                detail = json.loads(text).get("detail", text)
            except (json.JSONDecodeError, AttributeError):
                detail = text
            retry = exc.headers.get("Retry-After")
            raise ServiceError(exc.code, str(detail), float(retry) if retry else None) from None
        except urllib.error.URLError as exc:
            raise FastrankError(f"cannot reach {request.full_url}: {exc.reason}") from None
