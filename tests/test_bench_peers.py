"""bench/peers.py and the peer side of bench/run.py: peer-venv records carry that venv's library versions, a
missing flashrank costs only its own row, and sentence-transformers is needed only when peer rows are wanted.
Fake models and hidden imports stand in for the peer virtualenv."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import bench.peers as peers
import bench.run as bench_run
from fastrank.errors import MissingDependency

PEER_VERSIONS = {"sentence-transformers": "5.1.2", "transformers": "4.57.1", "flashrank": "0.2.10"}


class _FakeCrossEncoder:
    """Scores a pair by its document's length, with sentence-transformers' ``predict`` signature."""

    def predict(self, pairs, batch_size=32, activation_fn=None, show_progress_bar=False):
        return np.array([float(len(d)) for _, d in pairs])


def _hide(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``import package`` (and of its submodules) fail, as if it were not installed."""
    for name in [n for n in sys.modules if n.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


def _data(tmp_path: Path) -> Path:
    groups = [{"query": f"query {q}", "documents": [f"document {q} {'word ' * d}" for d in range(4)],
               "labels": [1 if d == q % 4 else 0 for d in range(4)]} for q in range(3)]
    path = tmp_path / "groups.jsonl"
    path.write_text("".join(json.dumps(g) + "\n" for g in groups), encoding="utf-8")
    return path


@pytest.fixture
def fake_peer_venv(monkeypatch: pytest.MonkeyPatch):
    """One fake sentence-transformers ONNX row, and the peer venv's library versions."""
    import fastrank.benchmark

    monkeypatch.setattr(peers, "_st_models", lambda model_dir, work: {
        "sentence-transformers onnx fp32": (_FakeCrossEncoder(), "onnxruntime", "fp32")})
    monkeypatch.setattr(fastrank.benchmark, "environment",
                        lambda threads: {"threads": threads, "versions": dict(PEER_VERSIONS)})


def test_peer_records_carry_the_peer_venvs_versions(tmp_path, fake_peer_venv):
    records = peers.run("unused", 1, True, tmp_path, None, _data(tmp_path))
    assert records and all(r["environment"]["versions"] == PEER_VERSIONS for r in records)
    assert all(r["environment"]["process"] == peers.PROCESS for r in records)
    main_env = {"versions": {"sentence-transformers": "6.2.0"}}
    for r in records:  # what benchmark_model does with external records: keeps an environment they carry
        r.setdefault("environment", main_env)
    assert all(r["environment"]["versions"]["sentence-transformers"] == "5.1.2" for r in records)


def test_missing_flashrank_skips_only_its_row(tmp_path, fake_peer_venv, monkeypatch, capsys):
    _hide(monkeypatch, "flashrank")
    artifact = tmp_path / "onnx-fp32"
    artifact.mkdir()
    (artifact / "fastrank.json").write_text(json.dumps({"max_length": 64}), encoding="utf-8")
    records = peers.run("unused", 1, True, tmp_path, artifact, _data(tmp_path))
    assert {r["row"] for r in records} == {"sentence-transformers onnx fp32"}
    assert f"{peers.NOTE}flashrank cannot be imported" in capsys.readouterr().err


def test_peer_notes_reach_the_main_run(tmp_path, monkeypatch, capsys):
    python = tmp_path / ".venv-peers" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\necho '{\"row\": \"sentence-transformers onnx fp32\"}'\n"
                      f"echo '{peers.NOTE}FlashRank row skipped' >&2\necho 'a library warning' >&2\n")
    python.chmod(0o755)
    monkeypatch.setattr(bench_run, "ROOT", tmp_path)
    records = bench_run.peer_records("model", tmp_path / "data.jsonl", 1, True, None)
    assert records == [{"row": "sentence-transformers onnx fp32"}]
    out = capsys.readouterr().out
    assert f"{peers.NOTE}FlashRank row skipped" in out and "a library warning" not in out


@pytest.fixture
def stubbed_run(tmp_path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """bench.run.main with exports, data and measurement stubbed out; returns what they were called with."""
    import fastrank.benchmark
    import fastrank.data

    calls: dict = {"exported": False}

    def export(*args, **kwargs):
        calls["exported"] = True
        return {}

    def benchmark_model(model, groups, artifacts, **kwargs):
        calls.update(kwargs)
        return []

    monkeypatch.setattr(bench_run, "require_shared_data", lambda: None)
    monkeypatch.setattr(bench_run, "export_artifacts", export)
    monkeypatch.setattr(bench_run, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(fastrank.benchmark, "benchmark_model", benchmark_model)
    monkeypatch.setattr(fastrank.data, "read_groups", lambda path: [])
    return calls


def test_no_peers_needs_no_sentence_transformers(stubbed_run, monkeypatch):
    _hide(monkeypatch, "sentence_transformers")
    bench_run.main(["--model", "m", "--data", "d.jsonl", "--quick", "--no-peers"])
    assert stubbed_run["exported"] and not stubbed_run["extra_rows"] and stubbed_run["external_records"] is None


def test_peers_without_sentence_transformers_fail_before_exporting(stubbed_run, monkeypatch):
    _hide(monkeypatch, "sentence_transformers")
    with pytest.raises(MissingDependency) as info:
        bench_run.main(["--model", "m", "--data", "d.jsonl", "--quick"])
    assert not stubbed_run["exported"]
    assert info.value.extra == "dev" and "--no-peers" in str(info.value)
