"""Triton repository padding widths (``fastrank.export.triton.pad_widths``) and the TensorRT profiles they follow."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from triton_stub import Tensor, load_tokenizer_model

from fastrank.export.profiles import Profile
from fastrank.export.triton import pad_widths

PROFILES = [Profile(1, 64, 64, 1, 24, 40).to_dict(), Profile(1, 64, 64, 41, 48, 48).to_dict(),
            Profile(1, 64, 64, 49, 128, 512).to_dict()]


def test_pad_widths_without_profiles_are_every_step():
    assert pad_widths(512) == [64, 128, 192, 256, 320, 384, 448, 512]
    assert pad_widths(100) == [64, 104]


def test_pad_widths_include_each_profile_top():
    """A 24-token pair pads to 40 (the first profile), not 64 (which only the 49-512 profile covers)."""
    widths = pad_widths(512, profiles=PROFILES)
    assert widths == [40, 48, 64, 128, 192, 256, 320, 384, 448, 512]
    assert next(w for w in widths if w >= 24) == 40
    assert next(w for w in widths if w >= 45) == 48
    for width in widths:  # each width fits the tightest profile that covers it
        assert any(p["min_seq"] <= width <= p["max_seq"] for p in PROFILES)


def test_pad_widths_cap_profile_tops_at_max_length():
    profiles = [Profile(1, 8, 8, 1, 16, 16).to_dict(), Profile(1, 8, 8, 17, 64, 600).to_dict()]
    assert pad_widths(100, profiles=profiles) == [16, 64, 104]


def test_pad_widths_reject_a_profile_without_max_seq():
    with pytest.raises(ValueError, match="TensorRT profile 1 needs max_seq as an integer >= 1"):
        pad_widths(64, profiles=[PROFILES[0], {"min_seq": 1}])


def test_triton_tokenizer_pads_short_requests_to_the_narrow_profile(o1_artifact, tmp_path, monkeypatch):
    """The repository's tokenizer model pads to the artifact's TensorRT profile tops, so a short pair batches in the
    narrow profile planned for it."""
    from fastrank.export.manifest import read_manifest, write_manifest
    from fastrank.export.triton import write_repository

    artifact = tmp_path / "artifact"
    shutil.copytree(o1_artifact, artifact)
    manifest = read_manifest(artifact)
    profiles = [Profile(1, 64, 64, 1, 16, 16).to_dict(), Profile(1, 64, 64, 17, 48, 64).to_dict()]
    write_manifest(artifact, {**manifest, "tensorrt": {"profiles": profiles, "engines": []}})
    model = load_tokenizer_model(write_repository(artifact, tmp_path / "repo"), monkeypatch)
    request = {"QUERY": Tensor("QUERY", np.array([b"capital?"], dtype=object)),
               "DOCUMENT": Tensor("DOCUMENT", np.array([b"paris"], dtype=object))}
    (outputs,) = model.execute([request])
    ids = {t.name: t.array for t in outputs}["input_ids"]
    assert ids.shape == (1, 16) and 0 < (ids != 0).sum() < 16
