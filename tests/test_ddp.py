"""Multi-process training: torchrun --nproc_per_node 2 on CPU (gloo) keeps both replicas identical."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_torchrun_two_processes_stay_in_sync(tiny_model_dir, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found next to the interpreter")
    script = Path(__file__).parent / "scripts" / "ddp_train.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29533", str(script), str(tiny_model_dir), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["steps"] for r in ranks] == [4, 4]
    assert ranks[0]["first"] == ranks[1]["first"]
    assert ranks[0]["sum"] == pytest.approx(ranks[1]["sum"], abs=1e-9)
    from fastrank import CrossEncoder

    untouched = CrossEncoder(tiny_model_dir, device="cpu")
    import torch

    start = torch.cat([p.detach().flatten() for p in untouched.parameters()])
    assert float(start.double().sum()) != pytest.approx(ranks[0]["sum"], abs=1e-6)
