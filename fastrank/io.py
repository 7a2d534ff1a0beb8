"""Atomic directory writes: build next to the target, then rename, so a failure never leaves half a model."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from fastrank.errors import FastrankError

# What fastrank writes at the top of an output directory: an artifact's manifest, a checkpoint's config, a Triton
# repository's model configs. A non-empty directory with none of these is not ours to replace.
OUTPUT_MARKERS = ("fastrank.json", "config.json", "*/config.pbtxt")


def check_output_dir(target: str | Path, keep: Iterable[str | Path] = ()) -> Path:
    """Refuse an output path whose replacement would destroy something that is not a fastrank output.

    Refused: the current directory or one holding it; a path equal to or holding any of ``keep`` (the inputs, e.g.
    the checkpoint being exported); an existing file; a non-empty directory holding no fastrank artifact,
    checkpoint or Triton repository (``OUTPUT_MARKERS``). Returns the resolved path. Call it before long work, so a
    bad ``--out`` fails at once rather than after training or an export.
    """
    target = Path(target).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise FastrankError(f"refusing to write over {target}: it is the current directory or holds it (the output "
                            "directory is replaced as a whole); choose a new directory")
    for item in keep:
        source = Path(item).expanduser().resolve()
        if target == source or target in source.parents:
            raise FastrankError(f"refusing to write over {target}: it holds the input {source}, which would be "
                                "replaced; choose another output directory")
    if not target.exists():
        return target
    if not target.is_dir():
        raise FastrankError(f"{target} exists and is not a directory; the output is a directory: choose another "
                            "path or remove it")
    if any(target.iterdir()) and not any(any(target.glob(marker)) for marker in OUTPUT_MARKERS):
        trainer = sorted(p.name for p in target.glob("checkpoint-*"))[:2]
        hint = (f"; it holds trainer checkpoints ({', '.join(trainer)}): save the model into a subdirectory, e.g. "
                f"{target / 'final'}" if trainer else "")
        raise FastrankError(f"refusing to replace {target}: it is a non-empty directory without a fastrank artifact, "
                            f"checkpoint or Triton repository in it (none of {', '.join(OUTPUT_MARKERS)}); choose "
                            f"a new or empty directory, or remove it first{hint}")
    return target


def _creatable(target: Path, what: str) -> None:
    """FastrankError unless ``target``'s nearest existing ancestor is a directory (a file in the way is named)."""
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FastrankError(f"cannot write {what} {target}: {parent} is a file, not a directory")
            return


def check_output_file(target: str | Path, keep: Iterable[str | Path] = (), what: str = "the output file") -> Path:
    """Refuse an output file path that is a directory, sits under a file, or is one of ``keep`` (the inputs, which
    writing it would destroy). Returns the resolved path. Call it before long work (mining, a benchmark)."""
    target = Path(target).expanduser().resolve()
    if target.is_dir():
        raise FastrankError(f"{what} {target} is a directory; give a file path")
    for item in keep:
        if target == Path(item).expanduser().resolve():
            raise FastrankError(f"refusing to write {what} over the input {target}; choose another path")
    _creatable(target, what)
    return target


def check_dir_path(target: str | Path, what: str) -> Path:
    """Refuse a path for a directory fastrank adds files to (a cache, plots) that is a file or sits under one."""
    target = Path(target).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise FastrankError(f"{what} {target} is a file; give a directory")
    _creatable(target, what)
    return target


@contextlib.contextmanager
def atomic_dir(target: str | Path, keep: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``, on error it is removed.
    ``target`` must pass ``check_output_dir`` (with ``keep``, the inputs it must not replace)."""
    target = check_output_dir(target, keep)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()  # the umask's permissions (mkdtemp's 0700 would make every written model private to its writer)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _umask_permissions(tmp)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask_permissions(root: Path) -> None:
    """Give every file under ``root`` the umask's permissions: safetensors writes its files 0600, which would make
    a saved model unreadable to anyone but its writer (a serving user, a shared cache)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)
