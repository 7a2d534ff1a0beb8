"""The benchmark engine behind ``fastrank bench`` / ``python -m bench run``: workloads, quality, parity (incl. tie
rate), records of every kind, the CLI and the plots, on a tiny model and hand-built groups."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastrank.benchmark import build_workloads, flops_per_pair, parity, quality

WORDS = "the cross encoder reads query and document together so it ranks passages well".split()


def _groups(n: int = 6, docs: int = 5, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for q in range(n):
        documents = [" ".join(rng.choice(WORDS, size=60)) for _ in range(docs)]
        labels = [1 if i == q % docs else 0 for i in range(docs)]
        out.append({"query": f"query {q} ranks passages", "documents": documents, "labels": labels})
    return out


def test_quick_workloads_cut_one_long_list_to_their_size(monkeypatch):
    """--quick on a file whose first query has 2,000 candidates scores ~600 short and ~100 long pairs, not the whole
    list (a 16k-candidate list ran bench --quick past 6 GB); passages are built only as far as they are kept."""
    import fastrank.benchmark as benchmark

    groups = _groups(1, docs=2000)
    groups[0]["labels"][3] = 1
    wl = build_workloads(groups, quick=True, passage_words=100, long_pairs=100)
    assert len(wl["short"]["pairs"]) == 600 and wl["short"]["groups"] == [(0, 600, groups[0]["labels"][:600])]
    assert len(wl["long"]["pairs"]) == 100
    calls, passage = [], benchmark._passage
    monkeypatch.setattr(benchmark, "_passage", lambda *args: calls.append(1) or passage(*args))
    build_workloads(groups, passage_words=100, long_pairs=100)
    assert len(calls) == 100


def test_quick_reads_only_the_head_of_the_data(tiny_model_dir, tmp_path):
    """``bench --quick`` read the whole file and built workloads of all of it, then kept ~600 pairs: on a large file
    it read gigabytes for a smoke run. It now takes the groups holding the first 6,000 candidates: the same
    workloads, and a bad record past them is never reached."""
    from typer.testing import CliRunner

    from fastrank.benchmark import quick_groups
    from fastrank.cli import app

    groups = _groups(400, docs=30)  # 12,000 candidates
    assert build_workloads(quick_groups(groups), quick=True) == build_workloads(groups, quick=True)
    assert len(quick_groups(groups)) == 200 and quick_groups(_groups(1, docs=9000))[0]["documents"]

    def endless():
        yield from groups
        raise AssertionError("read past the head")

    assert len(quick_groups(endless())) == 200
    sparse = _groups(400, docs=30)  # relevant candidates only from query 250 on: the long workload comes from there
    for g in sparse[:250]:
        g["labels"] = [0] * 30
    assert build_workloads(quick_groups(sparse), quick=True) == build_workloads(sparse, quick=True)
    data = tmp_path / "big.jsonl"
    data.write_text("\n".join(json.dumps(g) for g in groups[:210]) + "\n{not json\n")
    args = ["bench", str(tiny_model_dir), "--data", str(data), "--threads", "1", "--no-sweeps", "--no-latency"]
    result = CliRunner().invoke(app, args + ["--quick"])
    assert result.exit_code == 0, result.output
    full = CliRunner().invoke(app, args)
    assert full.exit_code != 0 and "big.jsonl line 211: not valid JSON" in str(full.exception)


def test_workloads_short_and_long():
    groups = _groups()
    wl = build_workloads(groups, passage_words=100, long_pairs=1000)
    assert len(wl["short"]["pairs"]) == 30 and wl["short"]["groups"][1] == (5, 10, [0, 1, 0, 0, 0])
    # a passage needs 100 words: candidates 0..3 of each list (60 + next 60 words), not the last
    assert len(wl["long"]["pairs"]) == 6 * 4
    assert all(100 <= len(d.split()) <= 120 for _, d in wl["long"]["pairs"])
    assert wl["long"]["groups"][0] == (0, 4, [1, 0, 0, 0])
    # a passage that goes on into the answer sentence holds the answer: the passage from candidate 0 of query 1
    # (candidates 0 and 1 whole) is relevant, as its candidate 1 is
    assert wl["long"]["groups"][1] == (4, 8, [1, 1, 0, 0])


def test_quality_and_parity_values():
    groups = [(0, 3, [0, 1, 0]), (3, 6, [1, 0, 0])]
    scores = np.array([0.1, 0.9, 0.2, 0.3, 0.8, 0.1])
    q = quality(scores, groups)
    assert q["map"] == pytest.approx((1.0 + 0.5) / 2) and q["mrr@10"] == pytest.approx(0.75)
    same = parity(scores, scores, groups)
    assert same["max_abs_dlogit"] == 0 and same["kendall_tau_min"] == 1 and same["tie_rate"] == 0
    reversed_ = parity(scores, -scores, groups)
    assert reversed_["kendall_tau_mean"] == pytest.approx(-1) and reversed_["top1_agreement"] == 0
    tied = parity(scores, np.array([0.5, 0.5, 0.5, 0.3, 0.8, 0.1]), groups)
    assert tied["tie_rate"] == pytest.approx(3 / 6)  # 3 of the 6 within-query pairs are tied


def test_flops_per_pair_minilm():
    config = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6}
    # 6 layers x 64 tokens x (2 x (4 x 384^2 + 2 x 384 x 1536) + 4 x 64 x 384)
    assert flops_per_pair(config, 64) == 6 * 64 * (2 * (4 * 384**2 + 2 * 384 * 1536) + 4 * 64 * 384)


@pytest.fixture(scope="module")
def artifact(tiny_model_dir, tmp_path_factory):
    from fastrank.export import export_model

    out = tmp_path_factory.mktemp("bench") / "onnx"
    export_model(str(tiny_model_dir), out, num_threads=1)
    return out


def test_benchmark_model_records(tiny_model_dir, artifact):
    from fastrank.benchmark import benchmark_model, markdown_table

    records = benchmark_model(str(tiny_model_dir), _groups(8), [artifact], quick=True, threads=1)
    kinds = {r["kind"] for r in records}
    assert kinds == {"throughput", "sweep-batch", "sweep-seq"}
    tp = {(r["workload"], r["row"]): r for r in records if r["kind"] == "throughput"}
    assert set(tp) == {(w, row) for w in ("short", "long") for row in ("fastrank torch fp32", "fastrank onnx fp32")}
    ref, onnx = tp[("short", "fastrank torch fp32")], tp[("short", "fastrank onnx fp32")]
    assert ref["parity"]["max_abs_dlogit"] == 0 and onnx["parity"]["max_abs_dlogit"] < 1e-4
    assert onnx["parity"]["kendall_tau_min"] == 1 and onnx["quality"] == pytest.approx(ref["quality"])
    assert set(ref["latency"]) == {"10", "100"} and ref["latency"]["100"]["items"] == 100
    assert ref["timing"]["items"] == 40 and "versions" in ref["environment"]
    assert "int8" in ref["matmul_gflops"] and ref["pct_of_peak"] > 0
    assert {r["batch_size"] for r in records if r["kind"] == "sweep-batch"} == {8, 32}
    table = markdown_table(records)
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 4 and "fastrank onnx fp32" in table
    queries = {r["workload"]: r["queries"] for r in records if r["kind"] == "throughput"}
    assert table.splitlines()[-1] == f"quality over {queries['long']} long queries, {queries['short']} short queries"


def test_two_artifacts_at_one_rung_get_a_row_each(tiny_model_dir, artifact, tmp_path):
    import shutil

    from fastrank.benchmark import benchmark_model

    shutil.copytree(artifact, tmp_path / "again")
    records = benchmark_model(str(tiny_model_dir), _groups(4), [artifact, tmp_path / "again"], quick=True, threads=1,
                              latency=False, sweeps=False)
    rows = {r["row"] for r in records if r["workload"] == "short"}
    assert rows == {"fastrank torch fp32", "fastrank onnx fp32", f"fastrank onnx fp32 ({tmp_path / 'again'})"}
    with pytest.raises(ValueError, match="given twice"):
        benchmark_model(str(tiny_model_dir), _groups(4), [artifact, artifact], quick=True, threads=1)


def test_an_artifact_of_another_checkpoint_is_warned_about(tiny_model_dir, artifact, tmp_path):
    import json
    import shutil

    from fastrank.benchmark import benchmark_model

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "note": "another checkpoint"}))
    for model, warned in ((tiny_model_dir, False), (other, True)):
        said: list[str] = []
        benchmark_model(str(model), _groups(2), [artifact], quick=True, threads=1, latency=False, sweeps=False,
                        progress=said.append)
        hits = [t for t in said if "was exported from other checkpoint files than" in t]
        assert bool(hits) is warned, said


def test_cli_bench_and_plots(tiny_model_dir, artifact, tmp_path):
    from typer.testing import CliRunner

    from fastrank.cli import app

    data = tmp_path / "groups.jsonl"
    data.write_text("\n".join(json.dumps(g) for g in _groups(4)))
    result = CliRunner().invoke(app, ["bench", str(tiny_model_dir), "--data", str(data), "--artifact", str(artifact),
                                      "--quick", "--threads", "1", "--no-sweeps", "--out", str(tmp_path / "r.jsonl"),
                                      "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert "| short | fastrank onnx fp32 |" in result.output
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(x)["kind"] == "throughput" for x in lines)
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["latency_vs_documents.png", "quality_vs_speed.png"]
    assert all((tmp_path / "plots" / p).stat().st_size > 5000 for p in pngs)
    missing = CliRunner().invoke(app, ["bench", str(tiny_model_dir), "--data", str(data), "--artifact",
                                       str(tmp_path / "nope"), "--quick"])
    message = " ".join(missing.output.replace("│", " ").split())  # rich wraps the error in a box
    assert missing.exit_code == 2 and "nope: no such directory" in message
    csv_out = CliRunner().invoke(app, ["bench", str(tiny_model_dir), "--data", str(data), "--out",
                                       str(tmp_path / "r.csv"), "--quick"])
    message = " ".join(csv_out.output.replace("│", " ").split())
    assert csv_out.exit_code == 2 and "written as JSON lines; name the file *.jsonl" in message
    (tmp_path / "plain").mkdir()
    plain = CliRunner().invoke(app, ["bench", str(tiny_model_dir), "--data", str(data), "--artifact",
                                     str(tmp_path / "plain"), "--quick"])
    message = " ".join(plain.output.replace("│", " ").split())
    assert plain.exit_code == 2 and "not an exported artifact (no fastrank.json" in message


def test_run_rows_keeps_first_run_logits_and_times_1000_docs_only_for_the_fastest_row_of_a_library():
    import time

    from fastrank.benchmark import run_rows

    calls = {"fast": 0, "slow": 0}
    order: list[str] = []

    def row(name: str, delay: float):
        def fn(pairs):
            calls[name] += 1
            order.append(name)
            time.sleep(delay)
            return np.arange(len(pairs), dtype=np.float32) * (1 + calls[name])  # differs on every call
        return {"library": "lib", "precision": "fp32"}, fn

    wl = build_workloads(_groups(4, docs=5), passage_words=100, long_pairs=0)
    records = run_rows({"fast": row("fast", 0.0), "slow": row("slow", 0.02)}, wl, threads=1, quick=False,
                       latency_sizes=(10, 1000))
    by_row = {r["row"]: r for r in records}
    assert by_row["fast"]["timing"]["runs"] == 2
    assert order[:6] == ["fast", "slow", "fast", "slow", "fast", "slow"]  # warm-ups, then timed runs round-robin
    # call 1 is the warm-up on every tenth pair, call 2 the first timed run: its logits are the kept ones
    assert np.asarray(by_row["fast"]["logits"])[:, 0].tolist() == (np.arange(20) * 3.0).tolist()
    assert set(by_row["fast"]["latency"]) == {"10", "1000"}
    assert set(by_row["slow"]["latency"]) == {"10"}
    assert by_row["fast"]["latency"]["1000"]["items"] == 1000


def test_backend_rows_on_the_checkpoint(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from fastrank.benchmark import benchmark_model, parse_backend_row
    from fastrank.cli import app

    assert parse_backend_row("torch-cuda:bf16") == ("torch-cuda", {"precision": "bf16"})
    assert parse_backend_row("onnx") == ("onnx", {})
    records = benchmark_model(str(tiny_model_dir), _groups(6), backends=["torch:bf16"], quick=True, threads=1,
                              latency=False, sweeps=False)
    tp = {r["row"]: r for r in records if r["kind"] == "throughput" and r["workload"] == "short"}
    assert set(tp) == {"fastrank torch fp32", "fastrank torch bf16"}
    assert tp["fastrank torch bf16"]["precision"] == "bf16"
    assert 0 < tp["fastrank torch bf16"]["parity"]["max_abs_dlogit"] < 0.1  # bf16 ran, close to the fp32 reference
    data = tmp_path / "groups.jsonl"
    data.write_text("\n".join(json.dumps(g) for g in _groups(4)))
    for spec, message in (("torch-cuda:fp16", "needs a CUDA GPU"), ("nope", "unknown backend 'nope'")):
        result = CliRunner().invoke(app, ["bench", str(tiny_model_dir), "--data", str(data), "--backend", spec,
                                          "--quick", "--no-sweeps", "--no-latency"])
        assert result.exit_code != 0 and message in str(result.exception)  # `fastrank` prints it as one line, exit 2


def test_noise_band_and_near_ties_on_hand_made_scores():
    from fastrank.benchmark import near_ties, noise_band

    groups = [(0, 3, [1, 0, 0]), (3, 5, [0, 1])]
    scores = np.array([2.0, 2.005, -1.0, 0.5, 0.3])
    assert near_ties(scores, groups) == round(1 / 3, 3)  # gaps 0.005, 2.995 and 0.2: one of three under 0.01
    assert noise_band(scores, np.zeros(5), groups) == [0.0, 0.0, 0.0]  # no perturbation, no change
    p5, p50, p95 = noise_band(scores, np.array([0.01, -0.01, 0.0, 0.0, 0.0]), groups)
    # the relevant document trails an irrelevant one by 0.005: noise of this size lifts it first in some draws
    # (about 3 in 10), never the second query's (0.2 apart)
    assert p5 == p50 == 0.0 < p95


def test_mixed_precision_rows_are_compared_with_their_matmul_rate():
    from fastrank.benchmark import peak_for

    rates = {"fp32": 180.0, "bf16": 420.0}
    assert peak_for("bf16-mixed", rates) == peak_for("bf16", rates) == 420.0
    assert peak_for("fp16", rates) == 180.0  # no fp16 rate measured: fp32's


def test_rows_rank_by_the_last_class_survive_nan_and_read_titles():
    """A multi-label row is ranked by its last class's log-odds (it was ranked by class 0, the 'not relevant' one);
    a row with NaN scores records no quality instead of ending the run; titled documents become the text the
    model reads (bench crashed on them)."""
    from fastrank.benchmark import run_rows
    from fastrank.evaluation.metrics import evaluate_rankings

    groups = _groups(4, docs=5)
    groups[0]["documents"][1] = {"title": "Passages", "text": groups[0]["documents"][1]}
    with pytest.raises(ValueError, match="titled documents need separator="):
        build_workloads(groups, passage_words=100)
    wl = build_workloads(groups, passage_words=100, long_pairs=0, separator="[SEP]")
    assert wl["short"]["pairs"][1][1].startswith("Passages [SEP] ")
    labels = [y for _, _, ys in wl["short"]["groups"] for y in ys]
    relevant = np.asarray(labels, dtype=np.float32)

    def two_labels(pairs):  # class 0 logit low for the relevant pairs, class 1's constant: P(class 1) ranks them
        n = len(pairs)
        return np.stack([relevant[:n] * -5.0, np.zeros(n, dtype=np.float32)], axis=1)

    def broken(pairs):
        return np.full(len(pairs), np.nan, dtype=np.float32)

    records = run_rows({"two": ({"library": "a"}, two_labels), "nan": ({"library": "b"}, broken)}, wl, threads=1,
                       quick=True, latency=False)
    by_row = {r["row"]: r for r in records}
    assert by_row["two"]["quality"]["map"] == 1.0 and by_row["two"]["queries"] == 4
    logits = two_labels(range(len(relevant)))
    for column in (0, 1):  # ranked by class 0 (the old bench) or by the last logit alone (the old verify)
        alone = evaluate_rankings([logits[s:e, column] for s, e, _ in wl["short"]["groups"]],
                                  [y for _, _, y in wl["short"]["groups"]]).metrics
        assert alone["map"] == pytest.approx(0.2)  # the positive last of 5
    assert by_row["nan"]["quality"] is None and "NaN" in by_row["nan"]["quality_error"]
    table = __import__("fastrank.benchmark").benchmark.markdown_table(records)
    (row,) = [line for line in table.splitlines() if line.startswith("| short | nan |")]
    assert row.split(" | ")[7:10] == ["-", "-", "-"] and "nan" not in row.split("| nan |")[1]  # no "nan" cells
    assert f"short nan: no quality: {by_row['nan']['quality_error']}" in table  # the reason, under the table


def test_peers_without_sentence_transformers_fail_at_once_naming_the_extra(tiny_model_dir, tmp_path, monkeypatch):
    import sys

    from typer.testing import CliRunner

    import fastrank.benchmark
    from fastrank.cli import app

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setitem(sys.modules, "sentence_transformers.cross_encoder", None)
    monkeypatch.setattr(fastrank.benchmark, "benchmark_model", lambda *a, **k: pytest.fail("measured first"))
    data = tmp_path / "groups.jsonl"
    data.write_text("\n".join(json.dumps(g) for g in _groups(2)))
    result = CliRunner().invoke(app, ["bench", str(tiny_model_dir), "--data", str(data), "--quick", "--peers"])
    from fastrank.errors import MissingDependency

    assert isinstance(result.exception, MissingDependency)  # `fastrank` prints it as an error, exit code 2
    assert "the --peers row needs" in str(result.exception) and '".[dev]"' in str(result.exception)


def test_plots_pass_over_a_row_without_quality(tmp_path):
    """A row whose logits were NaN is recorded with quality None (the run goes on); the plots leave it out."""
    from fastrank.plots import plot_records
    from fastrank.timing import Timing

    timing = Timing([0.1, 0.2], 10).summary()
    records = [{"kind": "throughput", "workload": "short", "row": "fp16", "timing": timing, "quality": None},
               {"kind": "throughput", "workload": "short", "row": "fp32", "timing": timing,
                "quality": {"map": 0.79}}]
    written = plot_records(records, tmp_path)
    assert [str(p).rsplit("/", 1)[-1] for p in written] == ["quality_vs_speed.png"]


def test_matmul_rates_leave_the_global_random_stream_alone():
    """The machine's matmul rates drew their matrices from torch's global generator, so a benchmark run shifted the
    random numbers of a seeded program around it."""
    import torch

    from fastrank.benchmark import matmul_rates

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    rates = matmul_rates(threads=1, size=32)
    assert rates["fp32"] > 0 and torch.equal(torch.rand(3), expected)
