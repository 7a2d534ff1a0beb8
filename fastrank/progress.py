"""When fastrank shows a progress bar: one rule for every bar it draws (scoring, encoding, reranking a run)."""

from __future__ import annotations

import os


def bar_disabled(show_progress_bar: bool | None) -> bool:
    """``tqdm(disable=...)`` for a caller's ``show_progress_bar``: off when the caller says so, and off for the
    whole process when ``TQDM_DISABLE`` is set to anything, as tqdm reads it (tqdm reads that variable only for
    arguments left out, and fastrank passes ``disable``, so it was ignored)."""
    return not show_progress_bar or bool(os.environ.get("TQDM_DISABLE"))
