"""Scale-out on Ray Serve: N replicas of the same rerank service across a Ray cluster, same request/response shape.

Every replica builds the FastAPI app of ``fastrank.serve.app`` (its own model and batching engine) and Ray's HTTP
proxy spreads requests over the replicas; each answer carries ``X-Fastrank-Replica`` (host:pid) so load spreading
can be checked. ``fastrank serve MODEL --ray-replicas N`` joins the cluster named by ``$RAY_ADDRESS`` (or starts a
local one) and deploys. Needs the ``ray`` extra: ``pip install -e ".[ray]"`` in the fastrank checkout.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict
from typing import Any

from fastrank.errors import require
from fastrank.serve.app import ServeConfig

require("ray", "ray", "scale-out on Ray Serve")

from ray import serve  # noqa: E402


async def _call_asgi(app, scope: dict[str, Any], receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run one HTTP request through an ASGI app and collect its response."""
    status, headers, body = 500, [], bytearray()

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, headers, bytes(body)


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=256)
class RerankDeployment:
    """One replica: the fastrank FastAPI app with its own model and cross-request batching engine."""

    def __init__(self, config: dict[str, Any]) -> None:
        from fastrank.serve.app import create_app

        self.app = create_app(ServeConfig(**config))
        self.replica = f"{socket.gethostname()}:{os.getpid()}"

    async def __call__(self, request):
        from starlette.responses import Response

        await self.app.state.engine.start()  # idempotent; Ray does not run the app's lifespan
        scope = {**request.scope, "root_path": ""}
        status, headers, body = await _call_asgi(self.app, scope, request.receive)
        response = Response(body, status_code=status)
        for key, value in headers:
            if key.lower() not in (b"content-length",):
                response.headers[key.decode("latin-1")] = value.decode("latin-1")
        response.headers["X-Fastrank-Replica"] = self.replica
        return response


def deploy(config: ServeConfig, replicas: int = 2, host: str = "127.0.0.1", port: int = 8000,
           cpus_per_replica: float = 1.0, blocking: bool = False) -> str:
    """Deploy ``replicas`` copies of the service on the current Ray cluster; returns the base URL."""
    import ray

    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    app = RerankDeployment.options(num_replicas=replicas,
                                   ray_actor_options={"num_cpus": cpus_per_replica}).bind(asdict(config))
    serve.run(app, name="fastrank", route_prefix="/", blocking=blocking)
    return f"http://{host}:{port}"
