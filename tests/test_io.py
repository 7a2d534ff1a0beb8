"""``atomic_dir``: a finished write replaces the target, a failed one leaves it as it was and nothing beside it;
a target that is not a fastrank output (or holds the input) is refused before anything is written."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_a_replaced_output_never_goes_missing_and_racing_writers_both_finish(tmp_path):
    """Replacing an existing output exchanges the two folders in one rename, so a reader polling the path always
    finds it (it was renamed aside, then the new one in: 399 failed loads in the audit, and a kill between the two
    renames left no output); writers racing on one path each finish, leaving one whole version and no temporaries
    (they failed with 'Directory not empty' and left hidden folders)."""
    import sys
    import threading

    from fastrank.io import _exchange

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    if not sys.platform.startswith("linux") or not _exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("no one-rename exchange here (Linux renameat2 on a file system that supports it)")
    for probe in ("a", "b"):
        (tmp_path / probe).rmdir()
    target = tmp_path / "art"
    missing, errors, stop = [], [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            if not target.is_dir():
                missing.append(1)

    def write(tag: str) -> None:
        try:
            for i in range(60):
                with atomic_dir(target) as tmp:
                    (tmp / "fastrank.json").write_text(f"{tag}{i}")
        except BaseException as exc:
            errors.append(exc)

    with atomic_dir(target) as tmp:
        (tmp / "fastrank.json").write_text("first")
    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(tag,)) for tag in "ab"]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert errors == [] and missing == []
    assert (target / "fastrank.json").read_text() in ("a59", "b59")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path, caplog):
    """A SIGKILL runs no cleanup: its ``.NAME.tmp-*`` (a whole model's size) stayed forever. The next write to the
    same output removes the temporaries of writers on this host that no longer run, and no others."""
    import subprocess

    from fastrank.io import _HOST

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid runs no more
    left = [tmp_path / f".art.tmp-{_HOST}-{dead.pid}-0123456789ab", tmp_path / f".art.old-{_HOST}-{dead.pid}-ab"]
    kept = [tmp_path / f".art.tmp-{_HOST}-{os.getpid()}-0123456789ab",  # a live writer's
            tmp_path / f".art.tmp-0badc0de-{dead.pid}-0123456789ab",  # another host's
            tmp_path / f".other.tmp-{_HOST}-{dead.pid}-ab"]  # another output's
    for path in left + kept:
        path.mkdir()
        (path / "weights").write_bytes(b"x" * 100)
    with caplog.at_level("WARNING", logger="fastrank.io"), atomic_dir(tmp_path / "art") as tmp:
        (tmp / "fastrank.json").write_text("v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["art"] + [p.name for p in kept])
    assert f"removing {left[0]}, left by an interrupted write" in caplog.text


def test_racing_writers_of_one_file_leave_one_whole_file(tmp_path):
    """write_groups (mine --out) from several threads at once: every call returns, the file is one writer's whole
    output, and no temporary is left (a shared 'F.tmp' name failed one writer and could mix their lines)."""
    import threading

    from fastrank.data import QueryGroup, read_groups, write_groups

    out = tmp_path / "mined.jsonl"
    outputs = {w: [QueryGroup(f"{w}-{i}", [f"doc {w} {j}" for j in range(50)], [1] + [0] * 49, f"{w}-{i}")
                   for i in range(200)] for w in "abcd"}
    errors: list[BaseException] = []

    def write(w: str) -> None:
        try:
            for _ in range(5):
                write_groups(outputs[w], out)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in outputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    written = read_groups(out)
    writer = written[0].query_id[0]
    assert [g.query_id for g in written] == [g.query_id for g in outputs[writer]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mined.jsonl"]
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_line_cut_short_is_closed_before_an_append_and_passed_over_when_read(tmp_path, caplog):
    """bench --out after a run stopped mid-write (a full disk, a kill): the next record starts on its own line (it
    was glued onto the broken one and lost), and the reader warns and passes over the broken line instead of
    failing on it (python -m bench report ended in a traceback)."""
    from fastrank.io import append_jsonl, read_jsonl

    out = tmp_path / "run.jsonl"
    append_jsonl(out, [{"row": 1}])
    with out.open("a") as f:
        f.write('{"row": 2, "pairs_per')  # what a stopped write leaves
    append_jsonl(out, [{"row": 3}, {"row": 4}])
    with caplog.at_level("WARNING", logger="fastrank.io"):
        assert read_jsonl(out) == [{"row": 1}, {"row": 3}, {"row": 4}]
    assert f"{out} line 2 is not JSON" in caplog.text


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
    (checkpoint / "model.safetensors").write_text("")
    (checkpoint / "tokenizer.json").write_text("{}")
    assert check_output_dir(checkpoint) == checkpoint.resolve()  # a checkpoint may be replaced by a new one
    triton = tmp_path / "repo"
    (triton / "fastrank_model").mkdir(parents=True)
    (triton / "fastrank_model" / "1").mkdir()
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


def test_a_project_with_a_config_json_is_not_replaced(tmp_path, monkeypatch):
    """A lone config.json (or a nested config.pbtxt) does not make a directory a fastrank output: replacing it would
    delete the rest of the project."""
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text("{}")
    (project / "src" / "main.py").write_text("x")
    (project / "deploy").mkdir()
    (project / "deploy" / "config.pbtxt").write_text("")
    for target in (project, project / "deploy"):
        with pytest.raises(FastrankError, match="not a fastrank|without a fastrank artifact, checkpoint or Triton"):
            check_output_dir(target)
    with pytest.raises(FastrankError, match="config.json, a weights file and a tokenizer file"), atomic_dir(project):
        pytest.fail("the body must not run")
    assert (project / "src" / "main.py").read_text() == "x" and (project / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]


def test_a_checkpoint_and_a_triton_repository_are_recognised_strictly(tmp_path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "README.md"):
        (checkpoint / name).write_text("{}")
    assert check_output_dir(checkpoint) == checkpoint.resolve()
    (checkpoint / "tokenizer_config.json").unlink()  # config + weights without a tokenizer: not a checkpoint
    with pytest.raises(FastrankError, match="refusing to replace"):
        check_output_dir(checkpoint)
    repo = tmp_path / "repo"
    for model in ("fastrank", "fastrank_model"):
        (repo / model / "1").mkdir(parents=True)
        (repo / model / "config.pbtxt").write_text("")
    assert check_output_dir(repo) == repo.resolve()
    (repo / "notes.txt").write_text("mine")  # anything but model directories: not a repository fastrank wrote
    with pytest.raises(FastrankError, match="refusing to replace"):
        check_output_dir(repo)
    (repo / "notes.txt").unlink()
    (repo / "fastrank" / "scripts").mkdir()
    with pytest.raises(FastrankError, match="refusing to replace"):
        check_output_dir(repo)


def test_an_output_path_that_cannot_be_created_is_refused_naming_the_blocker(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(FastrankError, match=f"{afile} is a file, not a directory"):
        check_output_dir(afile / "sub" / "out")
    if Path("/proc/self").is_dir():
        with pytest.raises(FastrankError, match="nothing can be created in /proc"):
            check_output_dir("/proc/fastrank-out")
        from fastrank.io import check_dir_path, check_output_file

        # bench --out / --plots and mine --out / --cache-dir: refused before the measuring or mining, not after
        with pytest.raises(FastrankError, match="cannot write --out /proc/b.jsonl: nothing can be created in /proc"):
            check_output_file("/proc/b.jsonl", (), "--out")
        with pytest.raises(FastrankError, match="cannot write --plots /proc/plots: nothing can be created in /proc"):
            check_dir_path("/proc/plots", "--plots")
        with pytest.raises(FastrankError, match="cannot write --cache-dir /proc: nothing can be created in /proc"):
            check_dir_path("/proc", "--cache-dir")  # an existing directory is probed inside
    monkeypatch.setattr("fastrank.io.check_output_dir", lambda target, keep=(), kind=None: Path(target))
    with pytest.raises(FastrankError, match=f"cannot write the output directory {afile / 'sub'}"), \
            atomic_dir(afile / "sub"):
        pytest.fail("the body must not run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_cli_export_refuses_an_unusable_out_before_loading(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import fastrank.model
    from fastrank.cli import app

    def no_load(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(fastrank.model.CrossEncoder, "__init__", no_load)
    (tmp_path / "afile").write_text("")
    result = CliRunner().invoke(app, ["export", "some/model", "--out", str(tmp_path / "afile" / "sub")])
    assert isinstance(result.exception, FastrankError) and "is a file, not a directory" in str(result.exception)


def test_check_output_file_passes_over_inputs_not_given(tmp_path):
    """As check_output_dir: a None among the inputs (an optional one not given) is no path to protect."""
    from fastrank.io import check_output_file

    given = tmp_path / "in.jsonl"
    assert check_output_file(tmp_path / "out.jsonl", [None, given]) == (tmp_path / "out.jsonl").resolve()
    with pytest.raises(FastrankError, match="over the input"):
        check_output_file(given, [None, given])


def test_check_output_file_refuses_a_file_inside_an_input_folder(tmp_path):
    """An input that is a folder (a model, a BEIR folder) protects every file in it, however deep: writing a run
    over config.json or qrels/dev.tsv broke it. A new file there is written over nothing, so it passes."""
    from fastrank.io import check_output_file

    model = tmp_path / "model"
    (model / "onnx").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "onnx" / "model.onnx").write_text("")
    for inside in (model / "config.json", model / "onnx" / "model.onnx", model / ".." / "model" / "config.json"):
        with pytest.raises(FastrankError, match=r"model.* it is a file of the input folder .*model, which writing it "
                                                r"would break"):
            check_output_file(inside, [None, model], "--out")
    assert check_output_file(model / "new.trec", [model]) == (model / "new.trec").resolve()
    blobs = tmp_path / "blobs"  # a hub cache snapshot: its files are links into blobs/, which writing replaces
    blobs.mkdir()
    (blobs / "abc").write_text("{}")
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "config.json").symlink_to(blobs / "abc")
    with pytest.raises(FastrankError, match=r"snapshot/config.json: it is a file of the input folder"):
        check_output_file(snapshot / "config.json", [snapshot])  # it was let through: the link resolves outside
    (model / "old.trec").write_text("q1 Q0 d1 1 2.5 fastrank\n")  # a rerun replaces its own earlier output
    from fastrank.evaluation.beir import is_trec_run

    assert check_output_file(model / "old.trec", [model], replaceable=is_trec_run) == (model / "old.trec").resolve()
    with pytest.raises(FastrankError, match="config.json: it is a file of the input folder"):
        check_output_file(model / "config.json", [model], replaceable=is_trec_run)
    assert check_output_file(tmp_path / "config.json", [model]) == (tmp_path / "config.json").resolve()
    assert check_output_file(model / "config.json", ["some/hub-model", tmp_path / "elsewhere"])  # not inputs


def test_saving_over_a_model_keeps_what_it_does_not_write(tiny_model_dir, tmp_path):
    """sentence-transformers' save_pretrained writes into a folder; fastrank's replaces it, so a folder holding
    trainer checkpoints or notes beside a model is refused (they would be deleted), while a plain model is replaced."""
    import shutil

    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir, device="cpu")
    out = model.save(tmp_path / "out")
    (out / "legacy.bin").unlink(missing_ok=True)
    model.save(out)  # a model over a model: replaced
    shutil.copytree(tiny_model_dir, out / "checkpoint-2")
    (out / "my_notes.txt").write_text("keep me")
    with pytest.raises(FastrankError, match="it holds checkpoint-2/, my_notes.txt, which this save does not write"):
        model.save_pretrained(out)
    assert (out / "my_notes.txt").read_text() == "keep me" and (out / "checkpoint-2" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


def test_the_umask_is_read_without_being_set(monkeypatch):
    """Reading the umask by setting it to 0 and back opened a window in which another thread's new files were
    world-writable; on Linux it is read from /proc, and elsewhere set to the strictest mask for that moment."""
    import os
    import sys

    from fastrank import io as fastrank_io

    expected = _umask()
    if sys.platform.startswith("linux"):
        def refuse(mask):
            raise AssertionError(f"os.umask({mask:o}) was called")

        monkeypatch.setattr(os, "umask", refuse)
        assert fastrank_io._umask() == expected
        monkeypatch.undo()
    set_to = []
    original = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: (set_to.append(mask), original(mask))[1])
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc")))
    assert fastrank_io._umask() == expected and set_to == [0o077, expected]
