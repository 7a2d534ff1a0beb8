"""The artifact manifest (``fastrank.json``): what an exported directory holds and how it was verified.

Also ``cpu_features()``: the CPU facts that choose the int8 configuration and are recorded in every manifest.
Light on purpose (stdlib + json): the runtime reads manifests without importing onnx or torch.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

from fastrank.errors import ModelLoadError, install_hint

MANIFEST_NAME = "fastrank.json"
MANIFEST_VERSION = 2  # the newest this fastrank reads
PROMPT_MANIFEST_VERSION = 2  # an artifact whose queries open with a prompt (``query_prompt``) needs a reader of 2+
FORMATS = ("onnx", "torch")
REQUIRED_FIELDS = ("manifest_version", "format", "precision", "input_names", "output_name", "max_length",
                   "activation", "num_labels")

# x86 flags that matter for int8 GEMMs (VNNI = u8*s8 dot products without saturation) and bf16.
_INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                      "amx_tile", "amx_int8", "amx_bf16")
_ARM_FEATURES = ("asimd", "asimddp", "i8mm", "bf16", "sve")


def _cpuinfo_flags(text: str) -> set[str]:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def int8_profile(machine: str, flags: set[str]) -> str:
    """Name of the int8 configuration that suits a CPU (see ``fastrank.export.onnx.INT8_CONFIGS``)."""
    machine = machine.lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    if {"avx512_vnni", "amx_int8"} & flags or "avx_vnni" in flags:
        return "avx512_vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "generic"


def cpu_features(cpuinfo: str | None = None, machine: str | None = None) -> dict[str, Any]:
    """CPU architecture, the flags that matter for int8/bf16, and the int8 profile they select.

    Reads ``/proc/cpuinfo`` (Linux); elsewhere only the architecture is known and the profile is conservative.
    """
    machine = machine or platform.machine()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    flags = _cpuinfo_flags(cpuinfo)
    if machine.lower() in ("arm64", "aarch64") and not flags:
        flags = {"asimd"}  # every arm64 CPU has NEON; Apple silicon has no /proc/cpuinfo
    relevant = sorted(f for f in flags if f in _INTERESTING_FLAGS + _ARM_FEATURES)
    return {
        "machine": machine,
        "flags": relevant,
        "int8_profile": int8_profile(machine, flags),
        "bf16": bool({"avx512_bf16", "amx_bf16", "bf16"} & flags),
    }


def feed_file(digest: Any, path: Path) -> None:
    """Add ``path``'s bytes to the hashlib ``digest``, a MiB at a time (model files do not fit in memory twice)."""
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)


def source_sha256(path: str | Path | None, state_dict: Any = None) -> tuple[str, str]:
    """(sha256, what was hashed): the weight files + config.json of a checkpoint dir, else the state dict."""
    digest = hashlib.sha256()
    if path is not None and Path(path).is_dir():
        files = sorted(p for p in Path(path).iterdir()
                       if p.suffix in (".safetensors", ".bin") or p.name == "config.json")
        if any(p.suffix in (".safetensors", ".bin") for p in files):
            for p in files:
                digest.update(p.name.encode())
                feed_file(digest, p)
            return digest.hexdigest(), "checkpoint files: " + ", ".join(p.name for p in files)
    if state_dict is None:
        raise ValueError("source_sha256 needs a checkpoint directory or a state dict")
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(tensor.view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return digest.hexdigest(), "state_dict"


def _byte_dtype():
    import torch

    return torch.uint8


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> Path:
    path = Path(directory) / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The manifest of an artifact directory; None when there is none (a plain checkpoint).

    Raises ModelLoadError for invalid JSON, missing fields, an unknown format, or a manifest written by a newer
    fastrank (``manifest_version`` above this one's).
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc}); re-export the model with `fastrank export`") from exc
    if not isinstance(manifest, dict):
        raise ModelLoadError(f"{path} must hold a JSON object, got {type(manifest).__name__}")
    version = manifest.get("manifest_version")
    if not isinstance(version, int):
        raise ModelLoadError(f"{path} has no integer manifest_version; re-export the model with `fastrank export`")
    if version > MANIFEST_VERSION:
        raise ModelLoadError(
            f"{path} has manifest_version {version}, written by a newer fastrank "
            f"({manifest.get('fastrank_version', 'unknown version')}); this fastrank reads manifest_version "
            f"<= {MANIFEST_VERSION}. Upgrade fastrank: update its checkout (git pull) and reinstall it, "
            f"{install_hint('train')}"
        )
    missing = [k for k in REQUIRED_FIELDS if k not in manifest]
    if missing:
        raise ModelLoadError(f"{path} lacks required fields {missing}; re-export the model with `fastrank export`")
    if manifest["format"] not in FORMATS:
        raise ModelLoadError(f"{path}: unknown format {manifest['format']!r}; known formats: {', '.join(FORMATS)}")
    return manifest
