"""bench/RESULTS.md sections: the GPU section says plainly that the check has not run, or renders the device run's
rows; the torch-precision A/B renders quality beside the noise reference it is read against."""

from __future__ import annotations

import json

import bench.report as report


def test_gpu_section_before_and_after_a_device_run(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "GPU_RESULTS", tmp_path / "gpu_check.json")
    assert "**Not run yet**" in report._gpu_section()
    rows = [{"row": "torch fp32 eager", "pairs_per_s_64x256": 1000.0, "speedup_vs_fp32_eager_64x256": 1.0,
             "wikiqa_pairs_per_s": 800.0, "ndcg@10": 0.81, "delta_ndcg@10": 0.0, "gate_ok": True},
            {"row": "torch fp16 eager", "pairs_per_s_64x256": 3000.0, "speedup_vs_fp32_eager_64x256": 3.0,
             "wikiqa_pairs_per_s": 900.0, "ndcg@10": 0.8, "delta_ndcg@10": 0.01, "gate_ok": False,
             "cuda_graphs": False},
            {"row": "torch fp16 + CUDA graphs", "pairs_per_s_64x256": 4200.0, "speedup_vs_fp32_eager_64x256": 4.2,
             "wikiqa_first_pass_pairs_per_s": 1500.0, "wikiqa_pairs_per_s": 2000.0, "ndcg@10": 0.8105,
             "delta_ndcg@10": 0.0005, "noise_delta_ndcg@10": "-0.0010 .. +0.0004", "gate_ok": True, "warmup_s": 3.1,
             "cuda_graphs": True},
            {"row": "tensorrt", "status": "not installed on this machine: not run"}]
    (tmp_path / "gpu_check.json").write_text(json.dumps({"header": "device: NVIDIA H200", "rows": rows}))
    text = report._gpu_section()
    assert "device: NVIDIA H200" in text and "Not run yet" not in text and "in the same call" not in text
    assert ("| torch fp16 + CUDA graphs | 4200.0 | 4.2 | 1500.0 | 2000.0 | 0.8105 | 0.0005 | -0.0010 .. +0.0004 |  | "
            "True | 3.1 |") in text
    assert "| tensorrt: not installed on this machine: not run |" in text
    assert ("1 of 2 16-bit rows pass the gate (ΔNDCG@10 <= 0.002 against torch fp32 eager). At batch 64 x 256 the "
            "16-bit rows run 3.00x to 4.20x fp32 eager's pairs/s (aim: >= 3x). On WikiQA test (steady state, short "
            "pairs, buckets padded) the CUDA-graph rows score 2.50x to 2.50x") in text
    (tmp_path / "gpu_check.txt").write_text("| table |\n..  [100%]\n2 passed, 11 deselected in 25.68s\n")
    assert "in the same call: 2 passed, 11 deselected in 25.68s (" in report._gpu_section()
    metrics = {"map": 0.5, "ndcg@10": 0.6}
    (tmp_path / "gpu_train.json").write_text(json.dumps({
        "config": {"loss": "listnet", "epochs": 3.0, "batch_size": 8}, "bf16": True, "train_rows": 873,
        "train_pairs_per_epoch": 8672, "train_seconds": 53.3, "train_pairs_per_second": 487.7,
        "eval_before": {"metrics": metrics}, "eval_after": {"metrics": {"map": 0.79, "ndcg@10": 0.84}}}))
    assert ("53.3 s of training, 487.7 train pairs/s; WikiQA test MAP 0.5000 -> 0.7900, NDCG@10 0.6000 -> 0.8400"
            in report._gpu_section())


def test_gpu_table_keeps_a_multiline_error_in_one_cell():
    from bench.gpu_check import table

    rows = [{"row": "torch fp16 eager", "status": "FAILED: OSError: no model\nsee the docs | or not"},
            {"row": "torch fp32 eager", "ndcg@10": 0.5}]
    lines = table(rows, ("row", "ndcg@10")).splitlines()
    assert lines[2:] == ["| torch fp16 eager: FAILED: OSError: no model see the docs \\| or not |  |",
                         "| torch fp32 eager | 0.5 |"]


def test_cpu_dry_run_section_only_when_its_results_exist(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "CPU_DRY_RUN", tmp_path / "gpu_check_cpu.json")
    assert report._cpu_dry_run_section() == ""
    rows = [{"row": "torch bf16-mixed eager", "ndcg@10": 0.4889, "delta_ndcg@10": 0.0005, "gate_ok": True}]
    (tmp_path / "gpu_check_cpu.json").write_text(json.dumps({"header": "device: cpu (dry run)", "rows": rows}))
    text = report._cpu_dry_run_section()
    assert text.startswith("### The same precisions on the CPU (parity only)") and "device: cpu (dry run)." in text
    assert "| torch bf16-mixed eager |  |  |  |  | 0.4889 | 0.0005 |  |  | True |  |" in text


def test_torch_precision_rows_beside_their_noise_reference():
    record = {"ab": "torch-precision", "workload": "long", "queries": 62, "near_ties": 0.265,
              "pairs_per_s": {"fp32": 25.1, "bf16": 56.2}, "ratio_vs_first": {"fp32": 1.0, "bf16": 2.239},
              "quality": {"fp32": {"ndcg@10": 0.7828, "map": 0.7118}, "bf16": {"ndcg@10": 0.7742, "map": 0.7001}},
              "max_abs_dlogit_vs_first": {"fp32": 0.0, "bf16": 0.0067},
              "noise_delta_ndcg@10": {"bf16": [-0.0172, -0.0031, 0.0041]}}
    text = report._runtime_ab_section([record])
    assert "| long | fp32 | 25.1 | 1.000x | 0.7828 | 0.7118 | 0.0e+00 | - |" in text
    assert "| long | bf16 | 56.2 | 2.239x | 0.7742 | 0.7001 | 6.7e-03 | -0.0172 / -0.0031 / +0.0041 |" in text
    assert "long 62 queries, 26%." in text


def _run_record(row: str, library: str, backend: str, versions: dict, process: str | None = None,
                runs: int = 2) -> dict:
    """One throughput record of ``python -m bench run`` as the report reads it (from the run.jsonl of one run)."""
    from fastrank.timing import Timing

    env = {"threads": 2, "cpu": "AMD EPYC", "versions": versions, **({"process": process} if process else {})}
    timing = Timing([1.0 + 0.1 * i for i in range(runs)], items=100).summary()
    return {"kind": "throughput", "workload": "short", "row": row, "library": library, "backend": backend,
            "precision": "fp32", "timing": timing, "quality": {"map": 0.5, "mrr@10": 0.5, "ndcg@10": 0.5},
            "gflop_per_pair": 0.8, "environment": env, "matmul_gflops": {"fp32": 100.0}, "run_id": "r1",
            "command": "python -m bench run --model m", "run_seconds": 1.0, "model": "m", "data": "d"}


MAIN_VERSIONS = {"fastrank": "0.1.0", "sentence-transformers": "6.2.0", "transformers": "5.24.0"}


def test_run_section_shows_the_peer_venvs_versions_apart():
    from bench import report_run
    from bench.peers import PROCESS

    peer_versions = {"sentence-transformers": "5.1.2", "transformers": "4.57.1", "flashrank": "0.2.10"}
    records = [_run_record("fastrank torch fp32", "fastrank", "torch", MAIN_VERSIONS),
               _run_record("sentence-transformers torch fp32", "sentence-transformers", "torch", MAIN_VERSIONS),
               _run_record("sentence-transformers onnx int8", "sentence-transformers", "onnxruntime", peer_versions,
                           PROCESS),
               _run_record("flashrank on fastrank's fp32 ONNX", "flashrank", "onnxruntime", peer_versions, PROCESS)]
    text = report_run.section(records)
    assert f"versions in this process {MAIN_VERSIONS}." in text
    assert ("Peer venv (bench/peers.py in .venv-peers; sentence-transformers onnx int8, flashrank on fastrank's "
            f"fp32 ONNX): versions {peer_versions}.") in text


def test_run_section_does_not_give_old_peer_rows_the_main_versions():
    from bench import report_run

    records = [_run_record("fastrank torch fp32", "fastrank", "torch", MAIN_VERSIONS),
               _run_record("sentence-transformers onnx fp32", "sentence-transformers", "onnxruntime", MAIN_VERSIONS)]
    text = report_run.section(records)
    assert "(bench/peers.py in .venv-peers; sentence-transformers onnx fp32): versions not recorded" in text


def test_run_section_latency_wording_matches_the_requests():
    from bench import report_run
    from fastrank.benchmark import latency_requests

    pairs = [("q1", "a"), ("q1", "b"), ("q2", "c")]
    assert latency_requests(pairs, (4,))[4] == [("q1", "a"), ("q1", "b"), ("q1", "c"), ("q1", "a")]
    text = report_run.section([_run_record("fastrank torch fp32", "fastrank", "torch", MAIN_VERSIONS)])
    assert "the first test query with N candidates" not in text
    assert "paired with the first N documents of the short workload" in text
    assert "picked separately in this process and in the peer venv" in text


def test_timing_interval_is_the_range_below_the_bootstrap_minimum():
    from fastrank.timing import Timing

    two = Timing([1.0, 2.0], items=10).summary()
    assert two["interval_kind"] == "range" and two["items_per_s_ci95"] == [5.0, 10.0]
    one = Timing([2.0], items=10).summary()
    assert one["interval_kind"] == "range" and one["items_per_s_ci95"] == [5.0, 5.0]
    many = Timing([1.0 + 0.01 * i for i in range(8)], items=10)
    assert many.summary()["interval_kind"] == "bootstrap95"
    assert many.summary()["items_per_s_ci95"] == [round(x, 2) for x in many.throughput_interval()]


def test_run_section_names_the_interval_it_shows():
    from bench import report_run

    few = _run_record("fastrank torch fp32", "fastrank", "torch", MAIN_VERSIONS, runs=2)
    few["timing"].pop("interval_kind", None)  # a record from before interval_kind: told by its run count
    text = report_run.section([few])
    assert "| workload | row | pairs/s | range of runs | runs | min s | median s |" in text
    assert "bootstrap 95% interval and spread" not in text
    many = _run_record("fastrank torch fp32", "fastrank", "torch", MAIN_VERSIONS, runs=8)
    assert "| workload | row | pairs/s | bootstrap 95% CI | runs |" in report_run.section([many])
    mixed = report_run.section([_run_record("fastrank torch fp32", "fastrank", "torch", MAIN_VERSIONS, runs=2),
                                _run_record("fastrank onnx fp32", "fastrank", "onnx", MAIN_VERSIONS, runs=8)])
    assert "| pairs/s | interval | runs |" in mixed and "(range of runs) |" in mixed and "(bootstrap 95% CI) |" in mixed


def test_long_quality_section_shows_the_latest_run_only():
    def record(run_id, row, value, quality=True):
        return {"command": "python -m bench long-quality", "run_id": run_id, "workload": "long", "row": row,
                "queries": 61, "quality": {"map": value, "mrr@10": value, "ndcg@10": value} if quality else None,
                "parity": {"max_abs_dlogit": 0.05, "top1_agreement": 0.961}}

    assert report._long_quality_section([]) == ""
    text = report._long_quality_section([record("a", "old", 0.1), record("b", "fastrank torch fp32", 0.8532),
                                         record("b", "broken", 0.0, quality=False)])
    assert "| long | fastrank torch fp32 | 61 | 0.8532 | 0.8532 | 0.8532 | 5.0e-02 | 0.961 |" in text
    assert "| long | broken | 61 | nan |" in text and "| old |" not in text
    assert "Command: `python -m bench long-quality` (run b;" in text


def test_memory_section_keeps_the_latest_record_per_code_and_row():
    """bench/memory.py records: one table row per (code version, row), the latest winning, with each version's
    command."""
    def record(code: str, row: str, extra: int, time: str) -> dict:
        return {"code": code, "row": row, "size": 200000, "seconds": 1.5, "extra_mib": extra, "time": time,
                "command": f"python -m bench memory ({code})"}

    section = report._memory_section([record("old", "predict", 1499, "t1"), record("new", "predict", 300, "t2"),
                                      record("new", "predict", 270, "t3")])
    assert "| new | predict | 200,000 | 1.50 | +270 | t3 |" in section and "+300" not in section
    assert "| old | predict | 200,000 | 1.50 | +1,499 | t1 |" in section
    assert "new: `python -m bench memory (new)`" in section and report._memory_section([]) == ""


def test_serve_section_keeps_the_load_table_after_a_later_mixed_run():
    from bench import report_serve

    machine = {"cores": 2}
    load = {"experiment": "serve-load", "time": "2026-12-01T10:00:00", "command": "python -m bench serve",
            "model": "m", "machine": machine, "mode": "cross-request batching", "concurrency": 8, "requests": 160,
            "requests_per_s": 6.5, "pairs_per_s": 130.0, "p50_ms": 1200.0, "p99_ms": 1500.0,
            "statuses": {"200": 160}, "max_abs_score_diff": 0.0, "peak_rss_mib": 400.0}
    mixed = [{"experiment": "serve-mixed", "time": "2026-12-03T11:00:00", "command": "python -m bench serve --mixed",
              "model": "m", "machine": machine, "server": server, "src": src, "traffic": "each alone",
              "small_requests": 120, "small_p50_ms": p50, "small_max_ms": 300.0, "big_ms": 3000.0, "big_docs": 1000,
              "max_abs_score_diff": 0.0}
             for server, src, p50 in (("this tree", "abc1234", 208.4), ("reference", "c320623", 221.9))]
    text = report_serve.section([load, *mixed])
    assert "| cross-request batching | 8 | 160 | 6.5 |" in text
    assert "| this tree | abc1234 | each alone | 120 | 208.4 |" in text and "| reference | c320623 |" in text
    assert report_serve.section(mixed).startswith("\n### A large request among small ones")


def test_prompts_section_shows_the_latest_run():
    def record(time, diff):
        return {"command": "python -m bench prompts", "time": time, "model": "runs/wikiqa", "prompt": "question: ",
                "pairs": 2351, "manifest": {"query_prompt": "question: ", "manifest_version": 2},
                "saved_prompts_read_by_sentence_transformers": {"prompts": {"q": "question: "},
                                                                "default_prompt_name": "q"},
                "rows": {"fastrank CrossEncoder": {"max_abs_logit_diff": 0.0, "ndcg@10": 0.85},
                         "sentence-transformers CrossEncoder": {"max_abs_logit_diff": diff, "ndcg@10": 0.85}}}

    assert report._prompts_section([]) == ""
    text = report._prompts_section([record("old", 0.5), record("new", 6.9e-7)])
    assert "| sentence-transformers CrossEncoder | 6.9e-07 | 0.8500 |" in text and "5.0e-01" not in text
    assert "(run new)" in text and 'default prompt "question: "' in text and "manifest_version 2" in text
