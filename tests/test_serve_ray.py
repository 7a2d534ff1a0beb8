"""Scale-out: two Ray Serve replicas of the rerank service on a local Ray instance answer with the same scores as
``Reranker.rerank``, and both replicas take requests. Slow (starts Ray); skipped without the ``ray`` extra."""

from __future__ import annotations

import socket

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("ray.serve", reason="ray[serve] not installed: pip install -e '.[ray]'")

pytestmark = pytest.mark.slow


def test_two_replicas_answer_like_the_reranker(tiny_model_dir):
    import httpx
    import ray
    from ray import serve

    from fastrank.reranker import Reranker
    from fastrank.serve.app import ServeConfig
    from fastrank.serve.ray_app import deploy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        url = deploy(ServeConfig(model=str(tiny_model_dir), backend="torch", num_threads=1), replicas=2,
                     port=port, cpus_per_replica=1)
        reranker = Reranker(tiny_model_dir, backend="torch")
        replicas = set()
        with httpx.Client(timeout=60) as client:
            for i in range(24):
                docs = [f"document {i} about ranking", "cross encoders read both texts", "x" * (i + 1)]
                response = client.post(url + "/rerank", json={"query": f"query {i}", "documents": docs})
                assert response.status_code == 200, response.text
                replicas.add(response.headers["x-fastrank-replica"])
                want = reranker.rerank(f"query {i}", docs)
                got = response.json()["results"]
                assert [r["index"] for r in got] == [r["index"] for r in want]
                np.testing.assert_allclose([r["relevance_score"] for r in got], [r["score"] for r in want],
                                           atol=1e-6)
            too_many = client.post(url + "/rerank", json={"query": "q", "documents": ["d"] * 1001})
            assert too_many.status_code == 413 and "max_documents" in too_many.json()["detail"]
        assert len(replicas) == 2
    finally:
        serve.shutdown()
        ray.shutdown()
