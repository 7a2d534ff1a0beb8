"""Reaching the Hugging Face hub: whether it can be reached at all, and what to load when it cannot.

Without network the hub client retries each request for ~25 s before it falls back to its cache or fails; one name
lookup tells the same at once, so offline loads take the cache straight away and uncached names fail straight away.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

from fastrank.errors import ModelLoadError

_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")


FAILED_LOOKUP_TTL_S = 30.0
# host -> (resolved, time.monotonic() of the lookup): a success holds for the process, a failure for
# FAILED_LOOKUP_TTL_S only, so a long-running service started before its network was up reaches the hub later
_LOOKUPS: dict[str, tuple[bool, float]] = {}


def hub_host_resolves() -> bool:
    """Whether the Hugging Face hub's host name resolves (a success is remembered for the process, a failure for
    ``FAILED_LOOKUP_TTL_S`` seconds). Behind a proxy only the proxy resolves names, so a proxy counts as
    reachable."""
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    known = _LOOKUPS.get(host)
    if known is not None and (known[0] or time.monotonic() - known[1] < FAILED_LOOKUP_TTL_S):
        return known[0]
    try:
        socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except OSError:
        resolved = False
    else:
        resolved = True
    _LOOKUPS[host] = (resolved, time.monotonic())
    return resolved


def hub_location(repo_id: str) -> str:
    """Where to load hub id ``repo_id`` from: the id itself (the hub downloads or revalidates it) or, offline
    (``HF_HUB_OFFLINE`` set, or the hub's host does not resolve), its snapshot in the local hub cache, at once.
    Offline, the hub client would retry for ~25 s before falling back to the cache, or fail with a network error
    where a mistyped local path was meant; a model that is not cached is a ModelLoadError saying so."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if not offline and hub_host_resolves():
        return repo_id
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(repo_id, local_files_only=True))
    except (OSError, ValueError) as exc:
        why = ("is offline (HF_HUB_OFFLINE is set)" if offline
               else "cannot be reached (its host does not resolve: no network?)")
        raise ModelLoadError(
            f"{repo_id!r} is no local directory, the Hugging Face hub {why} and the local hub cache holds no copy "
            "of it; pass a local model directory, or load it once where the hub is reachable so it is cached") from exc


@contextmanager
def datasets_offline_unless_reachable(datasets: Any) -> Iterator[bool]:
    """Put ``datasets`` in its offline mode (cached datasets only) while the hub's host does not resolve; yields
    whether it did, so an error can say why. The library's setting is restored on exit."""
    offline = not hub_host_resolves()
    previous = datasets.config.HF_HUB_OFFLINE
    if offline:
        datasets.config.HF_HUB_OFFLINE = True
    try:
        yield offline
    finally:
        datasets.config.HF_HUB_OFFLINE = previous
