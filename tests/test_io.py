"""``atomic_dir``: a finished write replaces the target, a failed one leaves it as it was and nothing beside it."""

from __future__ import annotations

import os

import pytest

from fastrank.io import atomic_dir


def test_atomic_dir_replaces_on_success_and_keeps_the_old_on_failure(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_dir(target) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "weights").read_text() == "v1"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700: others may read a saved model
