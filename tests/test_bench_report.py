"""bench/RESULTS.md sections: the GPU section says plainly that the check has not run, or renders the device run's
rows; the torch-precision A/B renders quality beside the noise reference it is read against."""

from __future__ import annotations

import json

import bench.report as report


def test_gpu_section_before_and_after_a_device_run(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "GPU_RESULTS", tmp_path / "gpu_check.json")
    assert "**Not run yet**" in report._gpu_section()
    rows = [{"row": "torch fp32 eager", "pairs_per_s_64x256": 1000.0, "speedup_vs_fp32_eager_64x256": 1.0,
             "ndcg@10": 0.81, "delta_ndcg@10": 0.0, "gate_ok": True},
            {"row": "torch fp16 + CUDA graphs", "pairs_per_s_64x256": 4200.0, "speedup_vs_fp32_eager_64x256": 4.2,
             "ndcg@10": 0.8105, "delta_ndcg@10": 0.0005, "noise_delta_ndcg@10": "-0.0010 .. +0.0004", "gate_ok": True,
             "warmup_s": 3.1},
            {"row": "tensorrt", "status": "not installed on this machine: not run"}]
    (tmp_path / "gpu_check.json").write_text(json.dumps({"header": "device: NVIDIA H200", "rows": rows}))
    text = report._gpu_section()
    assert "device: NVIDIA H200" in text and "Not run yet" not in text
    assert "| torch fp16 + CUDA graphs | 4200.0 | 4.2 |  | 0.8105 | 0.0005 | -0.0010 .. +0.0004 |  | True | 3.1 |" in text
    assert "| tensorrt: not installed on this machine: not run |" in text


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
    assert "| torch bf16-mixed eager |  |  |  | 0.4889 | 0.0005 |  |  | True |  |" in text


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
