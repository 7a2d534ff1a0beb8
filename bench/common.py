"""Paths, machine description and JSONL result records shared by the bench experiments."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from fastrank.io import append_jsonl, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS_DIR = ROOT / "bench" / "results"
WIKIQA = SHARED_DATA / "wikiqa"


def require_shared_data() -> Path:
    if not WIKIQA.is_dir():
        raise SystemExit(f"{WIKIQA} not found: this experiment needs ../shared/data beside the repository")
    return SHARED_DATA


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, threads and library versions."""
    import torch
    import transformers

    from fastrank.benchmark import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}


def append_record(name: str, record: dict[str, Any]) -> Path:
    """Append one result record (with a timestamp and machine info) to bench/results/<name>.jsonl."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), **record}
    return append_jsonl(RESULTS_DIR / f"{name}.jsonl", [record])


def read_records(name: str) -> list[dict[str, Any]]:
    path = RESULTS_DIR / f"{name}.jsonl"
    if not path.is_file():
        return []
    return read_jsonl(path)  # a line cut short by a stopped run is passed over, with a warning
