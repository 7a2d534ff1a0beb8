"""Atomic directory writes: build next to the target, then rename, so a failure never leaves half a model."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from fastrank.errors import FastrankError

logger = logging.getLogger(__name__)

MANIFEST_FILE = "fastrank.json"
# A Hugging Face checkpoint: its config, weights (one file or a shard index) and a tokenizer file, all three.
CHECKPOINT_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                      "pytorch_model.bin.index.json", "model.onnx")
CHECKPOINT_TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
OUTPUT_KINDS = (f"an artifact has {MANIFEST_FILE}; a checkpoint has config.json, a weights file and a tokenizer "
                "file; a Triton repository holds only model directories, each with config.pbtxt and numbered "
                "version directories")


# What each writer makes, and so may replace: an export its artifact, ``--format triton`` its repository.
ARTIFACT, CHECKPOINT, TRITON = "artifact", "checkpoint", "Triton repository"


def output_kind(directory: Path) -> str | None:
    """Which fastrank output ``directory`` is, and so may be replaced by a new one: ARTIFACT (it has fastrank.json,
    whatever else), CHECKPOINT, TRITON, or None when it is not recognisably something fastrank writes (a lone
    ``config.json`` is not enough: many projects have one)."""
    if (directory / MANIFEST_FILE).is_file():
        return ARTIFACT
    if _is_checkpoint(directory):
        return CHECKPOINT
    return TRITON if _is_triton_repository(directory) else None


def _is_checkpoint(directory: Path) -> bool:
    """A Hugging Face checkpoint: config.json, a weights file and a tokenizer file at its top."""
    return ((directory / "config.json").is_file() and _has_file(directory, CHECKPOINT_WEIGHTS)
            and _has_file(directory, CHECKPOINT_TOKENIZER))


def _has_file(directory: Path, names: tuple[str, ...]) -> bool:
    return any((directory / name).is_file() for name in names)


def _is_triton_repository(directory: Path) -> bool:
    """A Triton repository as ``fastrank.export.triton`` writes it: every entry a model directory whose entries are
    its config.pbtxt and numbered version directories (at least one); anything else in it is not ours."""
    entries = list(directory.iterdir())
    return bool(entries) and all(_is_triton_model(entry) for entry in entries)


def _is_triton_model(model: Path) -> bool:
    """A Triton model directory: config.pbtxt plus only numbered version directories, at least one."""
    if not model.is_dir() or model.is_symlink() or not (model / "config.pbtxt").is_file():
        return False
    others = [entry for entry in model.iterdir() if entry.name != "config.pbtxt"]
    return bool(others) and all(entry.is_dir() and entry.name.isdigit() for entry in others)


def check_output_dir(target: str | Path, keep: Iterable[str | Path] = (), kind: str | None = None) -> Path:
    """Refuse an output path whose replacement would destroy something that is not a fastrank output, or, with
    ``kind`` (what the caller writes: ARTIFACT or TRITON), a fastrank output of another kind (an export over a
    trained checkpoint deleted its weights).

    Refused: the current directory or one holding it; a path equal to or holding any of ``keep`` (the inputs, e.g.
    the checkpoint being exported; entries that are None or no existing path, such as a hub id, hold nothing here
    and are passed over); an existing file; a non-empty directory holding no fastrank artifact,
    checkpoint or Triton repository (``output_kind``); a path whose parent cannot be created or written.
    Returns the resolved path. Call it before long work, so a
    bad ``--out`` fails at once rather than after training or an export.
    """
    target = Path(target).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise FastrankError(f"refusing to write over {target}: it is the current directory or holds it (the output "
                            "directory is replaced as a whole); choose a new directory")
    for item in keep:
        source = Path(item).expanduser().resolve() if item else None
        if source is None or not source.exists():
            continue
        if target == source or target in source.parents:
            raise FastrankError(f"refusing to write over {target}: it holds the input {source}, which would be "
                                "replaced; choose another output directory")
    _check_writable_parent(target)
    if not target.exists():
        return target
    if not target.is_dir():
        raise FastrankError(f"{target} exists and is not a directory; the output is a directory: choose another "
                            "path or remove it")
    filled = any(target.iterdir())
    held = output_kind(target) if filled else None
    if filled and held is None:
        trainer = sorted(p.name for p in target.glob("checkpoint-*"))[:2]
        hint = (f"; it holds trainer checkpoints ({', '.join(trainer)}): save the model into a subdirectory, e.g. "
                f"{target / 'final'}" if trainer else "")
        raise FastrankError(f"refusing to replace {target}: it is a non-empty directory without a fastrank "
                            f"artifact, checkpoint or Triton repository in it ({OUTPUT_KINDS}); choose a new or "
                            f"empty directory, or remove it first{hint}")
    if kind is not None and held is not None and held != kind:
        article = "an" if held[0] in "aeiou" else "a"
        raise FastrankError(f"refusing to replace {target}: it holds {article} {held}, and writing this {kind} there "
                            f"would delete it (an export replaces only an output of its own kind); choose another "
                            "output directory")
    return target


def _check_writable_parent(target: Path, what: str = "the output directory", inside: bool = False) -> None:
    """FastrankError naming the blocking path unless the directory that will hold ``target`` (with ``inside``: an
    existing ``target`` itself, a directory files are added to) can be created and written: a file in the way, or a
    place where nothing can be made (read-only, /proc), is found now rather than after a model has loaded or a
    benchmark has run. Probes by making and removing a hidden directory in the nearest existing one."""
    _creatable(target, what)
    existing = next(p for p in ((target,) if inside else ()) + tuple(target.parents) if p.exists())
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".fastrank-write-check-", dir=existing))
    except OSError as exc:
        raise FastrankError(f"cannot write {what} {target}: nothing can be created in {existing} "
                            f"({exc.strerror or exc}); choose a path in a writable directory") from exc


def _creatable(target: Path, what: str) -> None:
    """FastrankError unless ``target``'s nearest existing ancestor is a directory (a file in the way is named)."""
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FastrankError(f"cannot write {what} {target}: {parent} is a file, not a directory")
            return


def check_output_file(target: str | Path, keep: Iterable[str | Path] = (), what: str = "the output file",
                      replaceable: Callable[[Path], bool] | None = None) -> Path:
    """Refuse an output file path that is a directory, sits under a file or where nothing can be written, or would
    destroy one of ``keep``, the inputs: the path of an input file, or an existing file anywhere inside an input
    directory (a model's config.json, a BEIR folder's qrels), also through a link (a hub cache snapshot's files
    are links, which writing replaces), unless ``replaceable`` says that file is an earlier output of this kind
    (a rerun). Returns the resolved path. Call it before long work (mining, a benchmark)."""
    if str(target).endswith(("/", os.sep)):  # Path() drops the slash, and a file of the folder's name was written
        raise FastrankError(f"{what} {target} ends with a slash, so names a directory; give a file path")
    given = Path(os.path.abspath(Path(target).expanduser()))
    placed = given.parent.resolve() / given.name  # where the file (or the link writing replaces) stands
    target = given.resolve()
    if target.is_dir():
        raise FastrankError(f"{what} {target} is a directory; give a file path")
    inputs = [Path(item).expanduser().resolve() for item in keep if item is not None]  # None: an input not given
    if target in inputs or placed in inputs:
        raise FastrankError(f"refusing to write {what} over the input {target}; choose another path")
    for item in inputs:
        inside = placed.is_relative_to(item) or target.is_relative_to(item)
        if item.is_dir() and os.path.lexists(placed) and inside and not (replaceable and replaceable(target)):
            raise FastrankError(f"refusing to write {what} over {placed}: it is a file of the input folder {item}, "
                                "which writing it would break; choose a path outside that folder or a new file name")
    _check_writable_parent(target, what)
    return target


def check_dir_path(target: str | Path, what: str) -> Path:
    """Refuse a path for a directory fastrank adds files to (a cache, plots) that is a file, sits under one, or
    where nothing can be written."""
    target = Path(target).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise FastrankError(f"{what} {target} is a file; give a directory")
    _check_writable_parent(target, what, inside=True)
    return target


def check_replaceable(target: str | Path, replaceable: Callable[[str], bool]) -> None:
    """FastrankError naming the entries of an existing directory ``target`` that fail ``replaceable``: replacing the
    folder as a whole would delete them (trainer checkpoints, notes, an ``onnx/`` export beside a model). Call it
    before long work too, so a training run does not end in a refused save."""
    target = Path(target).expanduser()
    if not target.is_dir():
        return
    kept = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir() if not replaceable(p.name))
    if kept:
        raise FastrankError(f"refusing to replace {target.resolve()}: it holds {', '.join(kept[:5])}"
                            f"{' ...' if len(kept) > 5 else ''}, which this save does not write and replacing the "
                            "folder would delete; choose a new or empty folder, or move them first")


@contextlib.contextmanager
def atomic_dir(target: str | Path, keep: Iterable[str | Path] = (),
               replaceable: Callable[[str], bool] | None = None, kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``, on error it is removed.
    ``target`` must pass ``check_output_dir`` (with ``keep``, the inputs it must not replace, and ``kind``).

    ``replaceable`` (a test on entry names): an existing ``target`` may only lose entries the new output rewrites or
    that pass it; any other (trainer checkpoints, notes, an ``onnx/`` folder beside a model) is a FastrankError
    naming them, and ``target`` is left as it was."""
    target = check_output_dir(target, keep, kind)
    tmp = _make_tmp(target)
    try:
        yield tmp
        if replaceable is not None:
            written = {p.name for p in tmp.iterdir()}
            check_replaceable(target, lambda name: name in written or replaceable(name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _umask_permissions(tmp)
    try:
        _swap_in(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FastrankError(f"could not put the new {target} in place ({exc.strerror or exc}): another process may "
                            "be writing the same path; write each output to its own path") from exc


def _swap_in(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``. An existing ``target`` is exchanged with ``tmp`` in one atomic rename where the
    system has one (Linux renameat2), so ``target`` never goes missing and a stop cannot leave it so; elsewhere it
    is renamed aside first. The old version is then removed."""
    if not target.exists():
        try:
            tmp.rename(target)
            return
        except OSError as exc:  # another writer put one there meanwhile: replace it as below
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old version
        return
    old = tmp.with_name(tmp.name.replace(".tmp-", ".old-", 1))
    target.rename(old)
    try:
        tmp.rename(target)
    except OSError:
        old.rename(target)  # put the old version back rather than leave nothing
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (renameat2 with RENAME_EXCHANGE); False where the system or file system has no
    such call (then nothing was changed)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


# The temporaries of an atomic write carry their writer's host and process, so the next write to the same target can
# remove the ones a killed process left (a SIGKILL or power loss runs no cleanup): ".NAME.tmp-HOST-PID-RANDOM".
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _make_tmp(target: Path) -> Path:
    """Create the temporary directory beside ``target`` (and ``target``'s parents), after removing those a killed
    writer on this host left; an OSError (a file in the way, a read-only or full disk) becomes a FastrankError
    naming the path."""
    _remove_abandoned(target)
    tmp = target.parent / f".{target.name}.tmp-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()  # the umask's permissions (mkdtemp's 0700 would make every written model private to its writer)
    except OSError as exc:
        raise FastrankError(f"cannot write the output directory {target}: creating {exc.filename or tmp} failed "
                            f"({exc.strerror or exc}); choose a path in a writable directory") from exc
    return tmp


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Yield a file opened on a uniquely named temporary beside ``path``; on success it replaces ``path`` whole, on
    error it is removed. Readers see the old file or the new one, never part of it, and writers racing on one path
    each write their own temporary, so the last one wins with a whole file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make the file private to its writer
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Append ``records`` to a JSONL file in one write. A last line cut short by an earlier stop or a full disk is
    closed first, so a new record is never glued onto it (``read_jsonl`` passes over such a line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, default=str) + "\n" for r in records).encode("utf-8")
    with path.open("a+b") as f:  # writes go to the end whatever the read position
        if f.seek(0, os.SEEK_END):
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                data = b"\n" + data
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a line that is not JSON (one cut short by a stop or a full disk) is passed over
    with a warning naming the file and line, so one broken line does not hide every record."""
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            logger.warning("%s line %d is not JSON (%s), passed over: a write cut short?", path, number, exc)
    return records


def _remove_abandoned(target: Path) -> None:
    """Remove ``target``'s temporaries (``.NAME.tmp-*`` / ``.NAME.old-*``) whose writer, a process on this host, no
    longer runs; another host's, or a live process's, are left alone."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:tmp|old)-{_HOST}-(\d+)-[0-9a-f]+")
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and not _running(int(match.group(1))):
            logger.warning("removing %s, left by an interrupted write to %s", entry, target)
            shutil.rmtree(entry, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def _umask() -> int:
    """The process's umask, read where Linux shows it: setting it to read it back (``os.umask``, the only portable
    way, used elsewhere) leaves it 0 for a moment, and a file another thread creates then is open to everyone."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)  # the strictest mask for that moment, not an open one
    os.umask(umask)
    return umask


def _umask_permissions(root: Path) -> None:
    """Give every file under ``root`` the umask's permissions: safetensors writes its files 0600, which would make
    a saved model unreadable to anyone but its writer (a serving user, a shared cache)."""
    umask = _umask()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)


def model_location(value: Any, name: str, accepted: str = "a model folder or a hub id") -> str | Path:
    """``value`` as a str or Path (any ``os.PathLike`` becomes a Path: pytest's ``tmpdir``, a UPath), else a
    TypeError saying ``name`` must be ``accepted``."""
    if isinstance(value, os.PathLike) and not isinstance(value, Path):
        value = Path(os.fspath(value))
    if not isinstance(value, (str, Path)):
        raise TypeError(f"{name} must be {accepted} (a str or path), got {type(value).__name__}")
    return value
