"""``fastrank.Client`` against scripted HTTP servers: every transport or protocol failure is a FastrankError that
names the URL, Retry-After is honoured in both of its forms, FastAPI's validation errors read as text, and bad
settings are refused at construction."""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fastrank import ServiceError
from fastrank.client import Client, _retry_after
from fastrank.errors import FastrankError

Reply = tuple[int, dict[str, str], bytes]


class _Scripted:
    """A local HTTP server that answers each request with the next scripted reply and records the paths asked."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies, self.paths = list(replies), []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                scripted.paths.append(self.path)
                status, headers, body = scripted.replies.pop(0)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator:
    servers: list[_Scripted] = []

    def start(*replies: Reply) -> _Scripted:
        servers.append(_Scripted(list(replies)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _json(status: int, body, **headers: str) -> Reply:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


OK: Reply = _json(200, {"results": [{"index": 0, "relevance_score": 0.5}], "model": "m", "usage": {}})


def test_a_server_that_never_answers_is_a_timeout_error_naming_the_url():
    with socket.socket() as silent:  # the kernel accepts the connection; nobody ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = Client(url, timeout=0.5, retries=2)
        started = time.monotonic()
        with pytest.raises(FastrankError, match=rf"^{url}/rerank did not answer within 0.5 s") as info:
            client.rerank("q", ["d"])
        assert not isinstance(info.value, (ServiceError, TimeoutError))
        with pytest.raises(FastrankError, match=rf"^{url}/health did not answer within 0.5 s"):
            client.health()
        assert time.monotonic() - started < 5  # a timeout is not retried


def test_a_refused_connection_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: connections are refused
        with pytest.raises(FastrankError, match=rf"^cannot reach {url}/rerank: .*refused"):
            Client(url, retries=0).rerank("q", ["d"])
        with pytest.raises(FastrankError, match=rf"^cannot reach {url}/health"):
            Client(url).health()


def test_retry_after_as_an_http_date_is_honoured(scripted, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr("fastrank.client.time.sleep", waits.append)
    when = email.utils.formatdate(time.time() + 30, usegmt=True)  # "Wed, 21 Oct 2026 07:28:00 GMT"
    server = scripted(_json(503, {"detail": "queue full"}, **{"Retry-After": when}),
                      _json(503, {"detail": "queue full"}, **{"Retry-After": "2"}),
                      _json(503, {"detail": "queue full"}), OK)
    assert Client(server.url, retries=3).rerank("q", ["d"]) == [{"index": 0, "relevance_score": 0.5}]
    assert server.paths == ["/rerank"] * 4
    assert 27 < waits[0] <= 30 and waits[1:] == [2.0, 0.5]  # the date, the seconds, the default


def test_retries_end_with_the_last_503(scripted, monkeypatch):
    monkeypatch.setattr("fastrank.client.time.sleep", lambda seconds: None)
    server = scripted(*[_json(503, {"detail": "3 requests are queued"}, **{"Retry-After": "1"})] * 2)
    with pytest.raises(ServiceError, match=rf"^HTTP 503 from {server.url}/rerank: 3 requests are queued$") as info:
        Client(server.url, retries=1).rerank("q", ["d"])
    assert info.value.status == 503 and info.value.retry_after == 1.0 and len(server.paths) == 2


def test_retry_after_forms():
    assert _retry_after("2") == 2.0 and _retry_after("0.25") == 0.25 and _retry_after("-3") == 0.0
    assert _retry_after("Sun, 06 Nov 1994 08:49:37 GMT") == 0.0  # a date in the past: retry now
    ahead = _retry_after(email.utils.formatdate(time.time() + 60, usegmt=False))  # "-0000" instead of "GMT"
    assert ahead is not None and 57 < ahead <= 60
    assert _retry_after(None) is None and _retry_after("soon") is None and _retry_after("inf") is None


def test_a_reply_that_is_not_the_services_json_is_a_fastrank_error(scripted):
    server = scripted((200, {"Content-Type": "text/html"}, b"<html>proxy login</html>"),
                      (200, {"Content-Type": "text/html"}, b"<html>proxy login</html>"),
                      _json(200, {"status": "ok"}))
    client = Client(server.url)
    with pytest.raises(FastrankError, match=rf"^{server.url}/rerank answered HTTP 200 with a body that is not JSON "
                                            r".*'<html>proxy login</html>'"):
        client.rerank("q", ["d"])
    with pytest.raises(FastrankError, match=rf"^{server.url}/health answered HTTP 200 with a body that is not JSON"):
        client.health()
    with pytest.raises(FastrankError, match=rf"^{server.url}/rerank answered HTTP 200 without a 'results' list"):
        client.rerank("q", ["d"])


def test_a_validation_error_reads_as_text(scripted):
    detail = [{"type": "string_type", "loc": ["body", "documents", 3, "str"], "msg": "Input should be a valid string",
               "input": 1},
              {"type": "greater_than_equal", "loc": ["body", "top_n"], "msg": "Input should be greater than or equal "
               "to 0", "input": -1, "ctx": {"ge": 0}}]
    server = scripted(_json(422, {"detail": detail}), (500, {}, b"upstream failed"))
    client = Client(server.url)
    with pytest.raises(ServiceError) as info:
        client.rerank("q", ["d"])
    assert str(info.value) == (f"HTTP 422 from {server.url}/rerank: documents.3.str: Input should be a valid string; "
                               "top_n: Input should be greater than or equal to 0")
    assert info.value.status == 422 and "{'type'" not in info.value.detail
    with pytest.raises(ServiceError, match=r"HTTP 500 from .*/rerank: upstream failed$"):
        client.rerank("q", ["d"])


@pytest.mark.parametrize("kwargs, message", [
    ({"retries": -1}, "retries must be an integer >= 0 (0: no retry), got -1"),
    ({"retries": 1.5}, "retries must be an integer >= 0 (0: no retry), got 1.5"),
    ({"retries": True}, "retries must be an integer >= 0 (0: no retry), got True"),
    ({"timeout": 0}, "timeout must be a number of seconds > 0, got 0"),
    ({"timeout": -1.0}, "timeout must be a number of seconds > 0, got -1.0"),
    ({"timeout": "5"}, "timeout must be a number of seconds > 0, got '5'"),
    ({"base_url": "localhost:8080"}, "base_url must be an http:// or https:// URL, got 'localhost:8080'"),
])
def test_bad_settings_are_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError) as info:
        Client(**kwargs)
    assert str(info.value) == message


def test_fastranks_errors_survive_pickling():
    """A worker process's error reaches its parent pickled: errors built from several arguments failed to unpickle
    (``TypeError: __init__() missing ...``), hiding the real error behind that one."""
    import pickle

    from fastrank.errors import MissingDependency

    error = pickle.loads(pickle.dumps(ServiceError(503, "queue full", 2.0, "http://h/rerank")))
    assert (error.status, error.detail, error.retry_after, error.url) == (503, "queue full", 2.0, "http://h/rerank")
    assert str(error) == "HTTP 503 from http://h/rerank: queue full"
    missing = pickle.loads(pickle.dumps(MissingDependency("onnxruntime", "onnx", "the ONNX backend")))
    assert (missing.package, missing.extra, missing.purpose) == ("onnxruntime", "onnx", "the ONNX backend")
    assert str(missing).startswith("the ONNX backend needs the 'onnxruntime' package")
    assert isinstance(missing, ImportError)
