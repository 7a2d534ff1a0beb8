"""PyTorch backend: a fastrank ``CrossEncoder`` in fp32, with its weights cast to bf16, or under bf16 autocast.

``bf16`` casts a copy of the weights once, so the whole pass runs in bf16; ``bf16-mixed`` keeps the fp32 weights
and runs under ``torch.autocast`` (matmuls and attention in bf16, LayerNorm and the residual stream in fp32), like
the torch-cuda backend's precision of that name. Measured interleaved on the trained WikiQA model with torch 2.13
on this 2-core avx512_bf16 CPU (``python -m bench runtime-ab --experiment torch-precision``): bf16 ran 3.0x / 2.6x
fp32's pairs/s on short pairs / ~250-token passages, bf16-mixed 2.9x / 2.2x, and both moved NDCG@10 by no more
than noise of their size does (the passages' overlapping text makes near-ties). The weight copy stays the export's
bf16 rung; bf16-mixed is there to compare on other CPUs. Logits are returned as fp32.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.backends.base import Backend
from fastrank.errors import ModelLoadError, require

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "bf16-mixed")


_THREADS_LOCK = threading.Lock()
_threads_in_use = {"calls": 0, "before": 1}  # calls holding a thread count of their own, and the count before them


@contextlib.contextmanager
def torch_threads(torch: Any, num_threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``num_threads`` (None: left alone) while the block runs, and the count
    from before the first of the calls running at once set back as each ends. A call that read the count while
    another held it (threads of a web app) restored the other's: the process stayed at that count afterwards."""
    if num_threads is None:
        yield
        return
    with _THREADS_LOCK:
        if not _threads_in_use["calls"]:
            _threads_in_use["before"] = torch.get_num_threads()
        _threads_in_use["calls"] += 1
        before = _threads_in_use["before"]
    try:
        torch.set_num_threads(num_threads)
        yield
    finally:
        with _THREADS_LOCK:  # set back before a call starting now reads the count as the one to restore
            _threads_in_use["calls"] -= 1
            torch.set_num_threads(before)


class TorchBackend(Backend):
    """Runs a ``CrossEncoder``'s Hugging Face model on the batches the reranker builds.

    Args:
        model: a loaded ``fastrank.CrossEncoder``.
        precision: ``fp32``; ``bf16``: a bf16 copy of the weights, the whole pass in bf16; ``bf16-mixed``: fp32
            weights under ``torch.autocast``: matmuls and attention in bf16, LayerNorm and the residual stream in fp32.
            Logits are returned as fp32 either way.
        num_threads: torch intra-op threads while this backend runs a batch. torch's thread count is process-wide,
            so it is set for the duration of each call and restored afterwards (``torch_threads``); None leaves it
            alone.
    """

    name = "torch"

    def __init__(self, model: Any, precision: str = "fp32", num_threads: int | None = None) -> None:
        self.torch = require("torch", "train", "the torch backend")
        if precision not in PRECISIONS:
            raise ValueError(f"torch backend precision must be one of {PRECISIONS}, got {precision!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        self.precision = precision
        self.num_threads = num_threads
        self.num_labels = int(model.num_labels)
        self.input_names = model.input_names
        if precision == "bf16":
            model = copy.deepcopy(model)  # never change the caller's model
            model.model.to(self.torch.bfloat16)
        self.model = model
        self.autocast_device = self.torch.device(model.device).type if precision == "bf16-mixed" else None
        if str(model.device).startswith("cpu"):
            self.pad_multiple = 1

    @classmethod
    def load(
        cls, path: str | Path, precision: str = "fp32", num_threads: int | None = None,
        device: str | None = None, max_length: int | None = None,
    ) -> TorchBackend:
        """Load a checkpoint directory (or hub id) as a CrossEncoder and wrap it."""
        require("torch", "train", "the torch backend")
        require("transformers", "train", "the torch backend")
        from fastrank.model import CrossEncoder

        return cls(CrossEncoder(path, device=device, max_length=max_length), precision, num_threads)

    @classmethod
    def from_artifact(cls, path: Path, manifest: dict[str, Any] | None, num_threads: int | None = None,
                      precision: str | None = None, device: str | None = None) -> TorchBackend:
        """A checkpoint directory or hub id (manifest None), or a torch-format artifact (its precision, max_length)."""
        if manifest is not None:
            if manifest["format"] != "torch":
                raise ModelLoadError(f"{path} is an exported {manifest['format']} artifact without torch weights; "
                                     f"open it with backend='auto' or {manifest['format']!r} (`fastrank bench` takes "
                                     "it as --artifact, beside the checkpoint it was exported from)")
            precision = precision or manifest["precision"]
            return cls.load(path, precision, num_threads, device, max_length=int(manifest["max_length"]))
        return cls.load(path, precision or "fp32", num_threads, device)

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        device = self.model.device
        features = {k: torch.from_numpy(v).to(device) for k, v in self._select_inputs(batch).items()}
        with self.model.scoring_mode(), torch_threads(torch, self.num_threads), torch.inference_mode(), \
                self._autocast():
            out = self.model.model(**features, return_dict=True).logits
        return out.float().cpu().numpy().astype(np.float32, copy=False)

    def _autocast(self) -> Any:
        """bf16 autocast for ``bf16-mixed``, else a no-op context."""
        if self.autocast_device is None:
            return contextlib.nullcontext()
        return self.torch.autocast(device_type=self.autocast_device, dtype=self.torch.bfloat16)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "precision": self.precision, "device": str(self.model.device),
                "num_threads": self.num_threads}
