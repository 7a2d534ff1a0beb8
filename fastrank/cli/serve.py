"""``fastrank serve``: the HTTP rerank service (``fastrank.serve.app``) under uvicorn."""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from fastrank.cli.output import BACKEND_HELP
from fastrank.errors import FastrankError, require

if TYPE_CHECKING:
    from fastrank.serve.app import ServeConfig

GRACEFUL_SHUTDOWN_S = 30  # SIGTERM drains accepted requests this long; later ones get uvicorn's 500 (README)


class ListenError(FastrankError, OSError):
    """The service cannot listen where it was asked to (a port in use, a host that is not this machine's)."""


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` as uvicorn binds one (SO_REUSEADDR; IPv6 for a host with ':').

    Bound and listening here, before the model loads and before the startup line, so that the line shows the real
    port (``--port 0`` picks a free one), a port in use is one clean error, and a client that connects at once is
    queued until the server accepts (it was refused for ~11 ms, ~1 s with 2 workers); uvicorn serves on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"port {port} on {host} is already in use; pick another --port (0 = any free port)"
                              ) from None
        raise ListenError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    sock.listen(2048)  # uvicorn's backlog: a client connecting once the startup line shows waits, is not refused
    sock.set_inheritable(True)  # uvicorn's workers (spawned processes) serve on it too
    return sock


def _url(host: str, sock: socket.socket) -> str:
    """Where ``sock`` answers: the host as given, the port as bound."""
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_command(
    model: Annotated[str, typer.Argument(help="Artifact directory (fastrank export), checkpoint dir or hub id.")],
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port; the address taken is printed).")
                    ] = 8080,
    backend: Annotated[str, typer.Option("--backend", help=BACKEND_HELP)] = "auto",
    max_batch_tokens: Annotated[int, typer.Option(
        "--max-batch-tokens", help="Padded tokens per batching step, shared by concurrent requests; a larger "
        "request is scored a step at a time, in turn with the others (smaller: less wait behind large ones).")] = 8192,
    max_wait_ms: Annotated[float, typer.Option(
        "--max-wait-ms", help="How long a request waits for others to share its batch.")] = 5.0,
    max_queue: Annotated[int, typer.Option(
        "--max-queue", help="Requests queued or running per worker; beyond it, 503 with Retry-After.")] = 256,
    max_documents: Annotated[int, typer.Option("--max-documents", help="Documents per request (413 above).")] = 1000,
    max_document_chars: Annotated[int, typer.Option(
        "--max-document-chars", help="Characters per document (413 above).")] = 100_000,
    max_query_chars: Annotated[int, typer.Option(
        "--max-query-chars", help="Characters in the query (413 above).")] = 10_000,
    long_documents: Annotated[str, typer.Option(
        "--long-documents", help="truncate | windows (score = best window).")] = "truncate",
    window_stride: Annotated[int | None, typer.Option(
        "--window-stride", help="With --long-documents windows: tokens consecutive windows share (default: a "
                                "quarter of max length).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Server processes, each with its own model.")] = 1,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="Inference threads per worker (default: cores / workers).")] = None,
    sessions: Annotated[str, typer.Option(
        "--sessions", help="onnx on CPU: sessions per worker scoring batches side by side, sharing its threads "
                           "(auto: 2 for int8 models).")] = "auto",
    ray_replicas: Annotated[int, typer.Option(
        "--ray-replicas", help="Deploy N replicas on Ray Serve ($RAY_ADDRESS, else a local Ray); needs "
                               "pip install -e '.\\[ray]' in the fastrank checkout.")] = 0,
    no_batching: Annotated[bool, typer.Option(
        "--no-batching", help="One request per batching step (the reference the bench compares with).")] = False,
) -> None:
    """Serve POST /rerank (Cohere/Jina/TEI request shape), GET /health and GET /metrics (Prometheus)."""
    require("uvicorn", "serve", "the HTTP rerank service")
    from fastrank.serve.app import ServeConfig

    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if ray_replicas < 0:
        raise typer.BadParameter(f"--ray-replicas must be >= 0 (0: no Ray), got {ray_replicas}")
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"--port must be a TCP port, 0-65535 (0: any free port), got {port}")
    if threads is not None and threads < 1:
        raise typer.BadParameter(f"--threads must be >= 1, got {threads}")
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    if sessions != "auto" and (not sessions.isdigit() or int(sessions) < 1):
        raise typer.BadParameter(f"--sessions must be 'auto' or a positive integer, got {sessions!r}")
    config = ServeConfig(model=model, backend=backend, num_threads=threads,
                         sessions=sessions if sessions == "auto" else int(sessions), long_documents=long_documents,
                         window_stride=window_stride,
                         max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, max_queue=max_queue,
                         max_batch_requests=1 if no_batching else None, max_documents=max_documents,
                         max_document_chars=max_document_chars, max_query_chars=max_query_chars)
    config.batching()  # validate before any worker starts
    if ray_replicas:
        from fastrank.serve.ray_app import deploy

        typer.echo(f"fastrank: {ray_replicas} Ray Serve replicas at {deploy(config, ray_replicas, host, port)}")
        import signal

        signal.pause()  # Ray serves; Ctrl-C stops the driver and its deployment
        return
    sock = listen_socket(host, port)
    try:
        _serve(config, sock, host, workers)
    finally:
        sock.close()


def _serve(config: ServeConfig, sock: socket.socket, host: str, workers: int) -> None:
    """Run uvicorn on the bound ``sock``: one process with the model loaded here, or ``workers`` spawned processes
    that each load it (uvicorn's multi-worker supervisor, as ``uvicorn.run(workers=N)`` starts it)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from fastrank.serve.app import CONFIG_ENV, check_model, config_to_env, create_app

    where = f"{_url(host, sock)}: POST /rerank, GET /health, GET /metrics (Ctrl-C stops)"
    port = sock.getsockname()[1]
    if workers == 1:
        app = create_app(config)  # loads the model
        typer.echo(f"fastrank: serving {config.model} on {where}", err=True)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                               timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
        server.run(sockets=[sock])
        if not server.started:  # uvicorn said why (its startup failed); exit non-zero as uvicorn.run does
            raise SystemExit(STARTUP_FAILURE)
        return
    check_model(config)  # a bad model is one error here, not workers failing one after another
    os.environ[CONFIG_ENV] = config_to_env(config)
    typer.echo(f"fastrank: {workers} workers loading {config.model}, serving on {where}", err=True)
    supervisor = Multiprocess(uvicorn.Config("fastrank.serve.app:create_app_from_env", factory=True, host=host,
                                             port=port, workers=workers, log_level="warning",
                                             timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S), sockets=[sock])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise FastrankError(f"a worker could not start (its error is above), so all {workers} workers were stopped")
