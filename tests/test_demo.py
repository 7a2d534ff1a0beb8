"""The demo dataset built from the standard library: well-formed, deterministic, split by module."""

from __future__ import annotations

from fastrank.data import read_groups
from fastrank.demo import build_demo_data


def test_demo_data_is_well_formed_and_split_by_module(tmp_path):
    paths = build_demo_data(tmp_path / "a", max_train=300, max_test=100)
    train, test = read_groups(paths["train"]), read_groups(paths["test"])
    assert len(train) == 300 and 50 <= len(test) <= 100
    for g in train + test:
        assert sum(g.labels) == 1 and 3 <= len(g.documents) <= 8
        assert g.positives[0] not in g.negatives
    module = lambda g: g.query_id.split(".")[0]  # noqa: E731
    assert not {module(g) for g in train} & {module(g) for g in test}
    again = build_demo_data(tmp_path / "b", max_train=300, max_test=100)
    assert paths["train"].read_text() == again["train"].read_text()


def test_demo_refuses_zero_epochs_before_writing_anything(tmp_path):
    from typer.testing import CliRunner

    from fastrank.cli import app

    result = CliRunner().invoke(app, ["demo", "--epochs", "0", "--workdir", str(tmp_path / "demo")])
    assert result.exit_code != 0 and "--epochs must be > 0, got 0.0" in str(result.exception)
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_a_bad_workdir_before_writing_anything(tmp_path):
    import pytest

    from fastrank.cli.train import run_demo
    from fastrank.errors import FastrankError

    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(FastrankError, match="--workdir .*afile is a file; give a directory"):
        run_demo(str(afile))
    foreign = tmp_path / "demo" / "model"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FastrankError, match="refusing to replace .*model"):
        run_demo(str(tmp_path / "demo"))
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["model"]  # no data written first
