"""A demo ranking dataset built from text every Python install has: the standard library's docstrings.

Query = the one-line summary of a function/class docstring; the relevant document = the rest of that docstring;
negatives = the docstrings of sibling objects in the same module (hard: same topic, same vocabulary).
Top-level modules are split into train and test by a stable hash, so test queries come from unseen modules.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
import random
import re
import sys
import warnings
from pathlib import Path

from fastrank.data import QueryGroup, write_groups

_SKIP_PREFIXES = ("_", "test", "tests", "idlelib", "tkinter", "turtle", "lib2to3", "ensurepip", "pydoc_data", "antigravity",
                  "this", "venv", "distutils", "msilib", "xxsubtype", "__phello__", "site", "encodings")


def _clean(text: str, max_words: int) -> str:
    words = re.sub(r"\s+", " ", text).strip().split(" ")
    return " ".join(words[:max_words])


def _split_doc(doc: str | None) -> tuple[str, str] | None:
    if not doc:
        return None
    doc = inspect.cleandoc(doc)
    parts = doc.split("\n\n", 1)
    summary = parts[0].replace("\n", " ").strip()
    body = parts[1].strip() if len(parts) > 1 else ""
    if not (3 <= len(summary.split()) <= 25) or len(body.split()) < 8 or "->" in summary:
        return None
    if re.match(r"^[\w.]+\(", summary):
        return None
    return summary, body


def _module_entries(module) -> list[tuple[str, str, str]]:
    entries = []
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        split = _split_doc(obj.__doc__)
        if split:
            entries.append((f"{module.__name__}.{name}", *split))
        if inspect.isclass(obj):
            for mname, meth in sorted(vars(obj).items()):
                if mname.startswith("_") or not inspect.isfunction(meth):
                    continue
                split = _split_doc(meth.__doc__)
                if split:
                    entries.append((f"{module.__name__}.{name}.{mname}", *split))
    return entries


def _stdlib_module_names() -> list[str]:
    """Top-level stdlib modules and the submodules of its packages, minus tests, GUIs and private ones."""
    stdlib_dir = Path(inspect.getfile(inspect)).parent
    names = []
    for info in pkgutil.iter_modules([str(stdlib_dir)]):
        if info.name.startswith(_SKIP_PREFIXES):
            continue
        names.append(info.name)
        if info.ispkg:
            sub = pkgutil.iter_modules([str(stdlib_dir / info.name)], prefix=info.name + ".")
            names += [m.name for m in sub if not m.name.rsplit(".", 1)[-1].startswith(_SKIP_PREFIXES)]
    return sorted(names)


def stdlib_groups(max_negatives: int = 7, max_words: int = 80, seed: int = 0) -> list[QueryGroup]:
    """Build query groups from the standard library (deterministic for a given Python version)."""
    rng = random.Random(seed)
    names = _stdlib_module_names()
    groups: list[QueryGroup] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            if name in sys.builtin_module_names:
                continue
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - optional stdlib modules fail to import in many ways
                continue
            entries = _module_entries(module)
            if len(entries) < 5:
                continue
            for i, (qid, summary, body) in enumerate(entries):
                others = [e for j, e in enumerate(entries) if j != i and e[1] != summary
                          and _clean(e[2], max_words) != _clean(body, max_words)]
                negs = rng.sample(others, min(max_negatives, len(others)))
                docs = [_clean(body, max_words)] + [_clean(e[2], max_words) for e in negs]
                labels = [1.0] + [0.0] * len(negs)
                order = list(range(len(docs)))
                rng.shuffle(order)
                groups.append(QueryGroup(summary, [docs[k] for k in order], [labels[k] for k in order], qid,
                                         meta={"module": name}))
    return groups


def _is_test_module(name: str, test_fraction: float) -> bool:
    digest = hashlib.sha1(name.encode()).digest()
    return digest[0] / 255.0 < test_fraction


def build_demo_data(out_dir: str | Path, max_train: int = 1200, max_test: int = 300,
                    test_fraction: float = 0.2, seed: int = 0) -> dict[str, Path]:
    """Write ``train.jsonl`` and ``test.jsonl`` (grouped JSONL) under ``out_dir``; returns their paths."""
    groups = stdlib_groups(seed=seed)
    rng = random.Random(seed)
    test = [g for g in groups if _is_test_module(g.meta["module"].split(".")[0], test_fraction)]
    train = [g for g in groups if not _is_test_module(g.meta["module"].split(".")[0], test_fraction)]
    rng.shuffle(train)
    rng.shuffle(test)
    out = Path(out_dir)
    return {"train": write_groups(train[:max_train], out / "train.jsonl"),
            "test": write_groups(test[:max_test], out / "test.jsonl")}
