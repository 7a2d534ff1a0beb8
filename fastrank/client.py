"""``fastrank.Client``: a small, dependency-free client for a ``fastrank serve`` endpoint (or any service that speaks
the same Cohere/Jina-style ``POST /rerank``).

    client = fastrank.Client("http://localhost:8080")
    client.rerank("what is a cross-encoder?", ["a model that reads both texts", "a bridge"], top_n=1)
"""

from __future__ import annotations

import datetime
import email.utils
import http.client
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from fastrank.batching import is_integer
from fastrank.documents import DOCUMENT_KEYS, check_documents
from fastrank.errors import FastrankError
from fastrank.fusion import check_fusion_input


class ServiceError(FastrankError):
    """The service answered with an error status; ``status``, the server's ``detail`` (rendered as text),
    ``retry_after`` (seconds, from the Retry-After header) and the ``url`` called are kept."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None, url: str | None = None) -> None:
        super().__init__(f"HTTP {status} from {url}: {detail}" if url else f"HTTP {status}: {detail}")
        self.status, self.detail, self.retry_after, self.url = status, detail, retry_after, url

    def __reduce__(self):  # pickled with its own arguments (a worker process's error reaches its parent whole)
        return type(self), (self.status, self.detail, self.retry_after, self.url)


class Client:
    """Calls ``POST {base_url}/rerank``; retries 503 (queue full) up to ``retries`` times after Retry-After.

    Every failure is a FastrankError naming the URL: ``ServiceError`` for an error status, FastrankError for a
    service that cannot be reached, does not answer within ``timeout`` seconds, or answers something that is not
    the service's JSON."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", timeout: float = 60.0, retries: int = 3) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0 (0: no retry), got {retries!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries = float(timeout), retries

    def rerank(self, query: str, documents: Sequence[str | Mapping[str, str]], top_n: int | None = None,
               return_documents: bool = False, first_stage_scores: Sequence[float] | None = None,
               fusion_weight: float = 0.0) -> list[dict[str, Any]]:
        """``[{"index", "relevance_score", "document"?}]`` best first, as the service returns them.
        ``first_stage_scores`` + ``fusion_weight``: rank by z(reranker) + weight x z(first stage), as
        ``Reranker.rerank`` does. A document is a string or ``{"text", "title"?}`` (the service scores the title
        with the text; other keys stay with the caller)."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        docs = [d if isinstance(d, str) else {k: d[k] for k in DOCUMENT_KEYS if d.get(k) is not None}
                for d in check_documents(documents)]
        body: dict[str, Any] = {"query": query, "documents": docs, "return_documents": bool(return_documents)}
        if top_n is not None:
            if not is_integer(top_n) or top_n < 0:
                raise ValueError(f"top_n must be None or an integer >= 0 (the best N; an int or NumPy integer, not a "
                                 f"bool), got {top_n!r}")
            body["top_n"] = int(top_n)
        first = check_fusion_input(first_stage_scores, len(docs), fusion_weight)  # what the service checks, here
        if first is not None:
            body["first_stage_scores"] = first.tolist()
        if fusion_weight:
            body["fusion_weight"] = float(fusion_weight)
        url = self.base_url + "/rerank"
        answer = self._post(url, body)
        if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
            raise FastrankError(f"{url} answered HTTP 200 without a 'results' list: {_excerpt(json.dumps(answer))}")
        return answer["results"]

    def health(self) -> dict[str, Any]:
        """``GET /health``: status, model, backend and queue depth."""
        return self._request(urllib.request.Request(self.base_url + "/health"))

    def _post(self, url: str, body: dict[str, Any]) -> Any:
        """POST ``body`` as JSON; a 503 is retried ``self.retries`` times, after its Retry-After (else 0.5 s)."""
        request = urllib.request.Request(url, data=json.dumps(body, allow_nan=False).encode("utf-8"), method="POST",
                                         headers={"Content-Type": "application/json"})
        attempt = 0
        while True:
            try:
                return self._request(request)
            except ServiceError as exc:
                if exc.status != 503 or attempt >= self.retries:
                    raise
                delay = 0.5 if exc.retry_after is None else exc.retry_after
            attempt += 1
            time.sleep(delay)

    def _request(self, request: urllib.request.Request) -> Any:
        """The decoded JSON answer; every failure is a FastrankError naming the URL (see the class docstring)."""
        url = request.full_url
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read().decode("utf-8", errors="replace")
            except (OSError, http.client.HTTPException):
                body = ""
            retry_after = _retry_after(exc.headers.get("Retry-After"))
            raise ServiceError(exc.code, _detail(body) or str(exc.reason or ""), retry_after, url) from None
        except urllib.error.URLError as exc:
            reason = f"no answer within {self.timeout:g} s" if isinstance(exc.reason, TimeoutError) else exc.reason
            raise FastrankError(f"cannot reach {url}: {reason}") from None
        except TimeoutError:
            raise FastrankError(f"{url} did not answer within {self.timeout:g} s (timeout)") from None
        except (OSError, http.client.HTTPException) as exc:  # reset, closed without an answer, a malformed answer
            raise FastrankError(f"{url} failed: {exc.__class__.__name__}: {exc}") from None
        try:
            return json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FastrankError(f"{url} answered HTTP {status} with a body that is not JSON ({exc}): "
                                f"{_excerpt(text.decode('utf-8', errors='replace'))}") from None


def _excerpt(text: str, limit: int = 200) -> str:
    """``text`` shortened for an error message."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _detail(body: str) -> str:
    """The readable text of an error body: its ``detail`` string, or FastAPI's validation list as
    ``"documents.3: msg; top_n: msg"`` (each item's location without the leading ``body``, and its message)."""
    try:
        detail = json.loads(body)
    except json.JSONDecodeError:
        return body
    if isinstance(detail, dict) and "detail" in detail:
        detail = detail["detail"]
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail and all(isinstance(item, dict) and "msg" in item for item in detail):
        parts = []
        for item in detail:
            loc = list(item.get("loc") or [])
            if loc and loc[0] == "body":
                loc = loc[1:]
            where = ".".join(str(part) for part in loc)
            parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
        return "; ".join(parts)
    return json.dumps(detail)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 7231 allows both); None when
    it is absent or unreadable, so the caller waits its default."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 7231: an HTTP-date is GMT; parsedate_to_datetime leaves "-0000" naive
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - time.time())
