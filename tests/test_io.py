"""``atomic_dir``: a finished write replaces the target, a failed one leaves it as it was and nothing beside it;
a target that is not a fastrank output (or holds the input) is refused before anything is written."""

from __future__ import annotations

import os

import pytest

from fastrank.errors import FastrankError
from fastrank.io import atomic_dir, check_output_dir


def test_atomic_dir_replaces_on_success_and_keeps_the_old_on_failure(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "fastrank.json").write_text("v1")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_dir(target) as tmp:
        (tmp / "fastrank.json").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "fastrank.json").read_text() == "v1"
    with atomic_dir(target) as tmp:
        (tmp / "fastrank.json").write_text("v2")
    assert (target / "fastrank.json").read_text() == "v2" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700: others may read a saved model
    with atomic_dir(target) as tmp:
        (tmp / "fastrank.json").write_text("v3")
        (tmp / "fastrank.json").chmod(0o600)  # as safetensors writes its weights
    assert (target / "fastrank.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_output_paths_that_would_destroy_other_files_are_refused(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "notes").mkdir(parents=True)
    (work / "mywork.txt").write_text("precious")
    monkeypatch.chdir(work / "notes")
    for target, message in ((work / "notes", "current directory"), (work, "current directory"),
                            (work / "mywork.txt", "not a directory")):
        with pytest.raises(FastrankError, match=message):
            check_output_dir(target)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(FastrankError, match="non-empty directory without a fastrank artifact"), atomic_dir(work):
        pytest.fail("the body must not run")
    checkpoint = tmp_path / "runs" / "ckpt"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text("{}")
    for target in (checkpoint, checkpoint.parent):  # the input itself, or a directory holding it
        with pytest.raises(FastrankError, match="holds the input"):
            check_output_dir(target, keep=[checkpoint])
    assert check_output_dir(checkpoint) == checkpoint.resolve()  # a checkpoint may be replaced by a new one
    triton = tmp_path / "repo"
    (triton / "fastrank_model").mkdir(parents=True)
    (triton / "fastrank_model" / "config.pbtxt").write_text("")
    assert check_output_dir(triton) == triton.resolve()
    trainer_out = tmp_path / "trainer"  # a trainer's output_dir: saving the model over it would delete checkpoints
    (trainer_out / "checkpoint-500").mkdir(parents=True)
    (trainer_out / "checkpoint-500" / "config.json").write_text("{}")
    with pytest.raises(FastrankError, match=r"holds trainer checkpoints \(checkpoint-500\): save the model into a "
                                            r"subdirectory, e.g. .*trainer/final"):
        check_output_dir(trainer_out)
    assert (work / "mywork.txt").read_text() == "precious" and sorted(p.name for p in work.iterdir()) == [
        "mywork.txt", "notes"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left behind
