"""``fastrank serve``: the HTTP rerank service (``fastrank.serve.app``) under uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from fastrank.cli.output import BACKEND_HELP
from fastrank.errors import require


def serve_command(
    model: Annotated[str, typer.Argument(help="Artifact directory (fastrank export), checkpoint dir or hub id.")],
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
    backend: Annotated[str, typer.Option("--backend", help=BACKEND_HELP)] = "auto",
    max_batch_tokens: Annotated[int, typer.Option(
        "--max-batch-tokens", help="Padded tokens per batching step, shared by concurrent requests.")] = 8192,
    max_wait_ms: Annotated[float, typer.Option(
        "--max-wait-ms", help="How long a request waits for others to share its batch.")] = 5.0,
    max_queue: Annotated[int, typer.Option(
        "--max-queue", help="Requests queued or running per worker; beyond it, 503 with Retry-After.")] = 256,
    max_documents: Annotated[int, typer.Option("--max-documents", help="Documents per request (413 above).")] = 1000,
    max_document_chars: Annotated[int, typer.Option(
        "--max-document-chars", help="Characters per document (413 above).")] = 100_000,
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
                               "pip install 'fastrank\\[ray]'.")] = 0,
    no_batching: Annotated[bool, typer.Option(
        "--no-batching", help="One request per batching step (the reference the bench compares with).")] = False,
) -> None:
    """Serve POST /rerank (Cohere/Jina/TEI request shape), GET /health and GET /metrics (Prometheus)."""
    require("uvicorn", "serve", "the HTTP rerank service")
    import uvicorn

    from fastrank.serve.app import CONFIG_ENV, ServeConfig, config_to_env, create_app

    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"--port must be a TCP port, 0-65535 (0: any free port), got {port}")
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    if sessions != "auto" and not sessions.isdigit():
        raise typer.BadParameter(f"--sessions must be 'auto' or a positive integer, got {sessions!r}")
    config = ServeConfig(model=model, backend=backend, num_threads=threads,
                         sessions=sessions if sessions == "auto" else int(sessions), long_documents=long_documents,
                         window_stride=window_stride,
                         max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, max_queue=max_queue,
                         max_batch_requests=1 if no_batching else None, max_documents=max_documents,
                         max_document_chars=max_document_chars)
    config.batching()  # validate before any worker starts
    if ray_replicas:
        from fastrank.serve.ray_app import deploy

        typer.echo(f"fastrank: {ray_replicas} Ray Serve replicas at {deploy(config, ray_replicas, host, port)}")
        import signal

        signal.pause()  # Ray serves; Ctrl-C stops the driver and its deployment
        return
    where = f"http://{host}:{port}: POST /rerank, GET /health, GET /metrics (Ctrl-C stops)"
    if workers == 1:
        app = create_app(config)  # loads the model
        typer.echo(f"fastrank: serving {model} on {where}", err=True)
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
        return
    os.environ[CONFIG_ENV] = config_to_env(config)
    typer.echo(f"fastrank: {workers} workers loading {model}, serving on {where}", err=True)
    uvicorn.run("fastrank.serve.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", timeout_graceful_shutdown=30)
