"""The README's Python snippets run as written (on a toy train.jsonl/dev.jsonl in a temp directory)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _toy(path: Path, n: int) -> None:
    rows = [{"query_id": str(i), "query": f"what is item {i}", "documents": [f"item {i} is a thing", "unrelated"],
             "labels": [1, 0]} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_readme_has_two_setup_commands():
    text = README.read_text(encoding="utf-8")
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", setup, flags=re.S)
    assert len(commands) == 2
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    test_command = commands[1].strip().split(" && ", 2)[-1]
    assert test_command in ci, "the README's test command must be what .ci/run runs"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index, tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    _toy(tmp_path / "train.jsonl", 8)
    _toy(tmp_path / "dev.jsonl", 4)
    if "runs/wikiqa-onnx" in SNIPPETS[index]:  # the tour's exported artifact, made from the tiny test model
        from fastrank.export import export_model

        export_model(tiny_model_dir, tmp_path / "runs" / "wikiqa-onnx", precision="fp32", num_threads=1)
    exec(compile(SNIPPETS[index], f"README snippet {index}", "exec"), {"__name__": "__readme__"})
