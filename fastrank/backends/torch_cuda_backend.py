"""PyTorch CUDA backend: fp16/bf16/fp32 weights on a GPU, with one CUDA graph per (batch, length) bucket.

Precisions: ``fp16`` / ``bf16`` cast every weight, so the whole pass (residual stream included) is 16-bit;
``fp16-mixed`` / ``bf16-mixed`` keep fp32 weights and run under ``torch.autocast``: matmuls and attention in 16
bits, LayerNorm and the residual stream in fp32, for closer logits to fp32's at some speed. (WikiQA test, the
trained model on a CPU: bf16 changed NDCG@10 by 0.0003, bf16-mixed by 0.0002, both inside what noise of their
Δlogit size does; the GPU check measures both on a GPU.)
Autocast's weight-cast cache is off, so each replayed graph casts the weights itself rather than reading copies
freed after capture.

Batches are padded up to bucket points (batch 1, 2, 4, ... ``max_batch``; lengths every ``seq_step`` tokens, see
``fastrank.export.profiles.graph_buckets``) and each bucket's forward pass is captured once as a CUDA graph and
replayed, which removes the per-kernel launch cost that dominates small reranking batches. A bucket whose capture
fails (e.g. a model with data-dependent control flow) runs eagerly and ``describe()`` says so. Logits come back
as fp32. Needs CUDA torch; verified by ``bench/gpu_check.sh`` only when a GPU machine is lent.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.backends.base import Backend
from fastrank.errors import FastrankError, require
from fastrank.export.profiles import bucket_shape, graph_buckets, pad_batch

logger = logging.getLogger(__name__)

DTYPES = ("fp32", "fp16", "bf16", "fp16-mixed", "bf16-mixed")


class TorchCudaBackend(Backend):
    """A ``CrossEncoder`` on a CUDA device in ``precision``, optionally replaying CUDA graphs per bucket. It takes
    the model over (graphs hold its weights): moved, cast in place and in eval mode for good; ``from_artifact``,
    what ``Reranker`` uses, loads a model of its own."""

    name = "torch-cuda"

    def __init__(self, model: Any, precision: str = "fp16", cuda_graphs: bool = True, max_batch: int = 64,
                 seq_step: int = 64, device: str = "cuda", pad_to_buckets: bool | None = None) -> None:
        self.torch = torch = require("torch", "train", "the torch CUDA backend")
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {DTYPES}, got {precision!r}")
        if (device.startswith("cuda") or cuda_graphs) and not torch.cuda.is_available():
            raise FastrankError("the torch-cuda backend needs a CUDA GPU; none is visible (use backend='torch')")
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}
        base = precision.removesuffix("-mixed")
        self.autocast = half[base] if precision.endswith("-mixed") else None
        dtype = torch.float32 if self.autocast is not None or base == "fp32" else half[base]
        self.model = model
        self.hf = model.model.to(device=device, dtype=dtype).eval()
        self.precision, self.device, self.cuda_graphs = precision, device, cuda_graphs
        self.device_type = torch.device(device).type  # "cuda" for "cuda:1": what autocast takes
        self.pad_to_buckets = cuda_graphs if pad_to_buckets is None else pad_to_buckets
        self.num_labels = int(model.num_labels)
        self.input_names = model.input_names
        self.pad_token_id = int(getattr(model.tokenizer, "pad_token_id", 0) or 0)
        self.batches, self.seqs = graph_buckets(max_batch, int(model.max_length), seq_step)
        self.max_batch = self.batches[-1] if self.pad_to_buckets else None
        self.graphs: dict[tuple[int, int], Any] = {}
        self._pool: Any = None
        self._lock = threading.Lock()  # graphs replay into shared static buffers: one batch at a time
        self.eager_buckets: set[tuple[int, int]] = set()

    @classmethod
    def from_artifact(cls, path: Path, manifest: dict[str, Any] | None, precision: str = "fp16",
                      cuda_graphs: bool = True, **options: Any) -> TorchCudaBackend:
        from fastrank.model import CrossEncoder

        if manifest is not None and manifest["format"] != "torch":
            raise FastrankError(f"{path} is an exported {manifest['format']} artifact; torch-cuda needs a checkpoint")
        options.pop("num_threads", None)
        return cls(CrossEncoder(path), precision=precision, cuda_graphs=cuda_graphs, **options)

    def _forward(self, inputs: dict[str, Any]):
        if self.autocast is None:
            return self.hf(**inputs, return_dict=True).logits
        with self.torch.autocast(device_type=self.device_type, dtype=self.autocast, cache_enabled=False):
            return self.hf(**inputs, return_dict=True).logits

    def _capture(self, rows: int, width: int):
        torch = self.torch
        static = {n: torch.zeros((rows, width), dtype=torch.int64, device=self.device) for n in self.input_names}
        static["attention_mask"][:, 0] = 1
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):  # warm-up on a side stream, as capture requires
                self._forward(static)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # One memory pool for every bucket's graph: replays run one at a time on one stream and each output is
        # copied out before the next replay, so graphs may reuse each other's intermediates. Memory is then the
        # largest bucket's, not the sum over buckets. "thread_local": a capture on first use must not make CUDA calls
        # that other threads of a serving process make meanwhile fail (PyTorch's "global" default forbids them all).
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            out = self._forward(static)
        return graph, static, out

    def _graph(self, key: tuple[int, int]) -> Any:
        """Bucket ``key``'s (graph, static inputs, output), captured on first use; None where capture failed."""
        if key not in self.graphs and key not in self.eager_buckets:
            try:
                with self.torch.cuda.device(self.device):  # streams and capture on the model's GPU, e.g. cuda:1
                    self.graphs[key] = self._capture(*key)
            except RuntimeError as exc:  # capture is not possible for this model/bucket: run it eagerly
                logger.warning("CUDA graph capture failed for bucket %s (%s); running it eagerly", key, exc)
                self.eager_buckets.add(key)
        return self.graphs.get(key)

    def warmup(self) -> int:
        """Capture every bucket's CUDA graph now, so no request pays a capture; returns the graphs ready."""
        if self.cuda_graphs:
            with self._lock:
                for rows in self.batches:
                    for width in self.seqs:
                        self._graph((rows, width))
        return len(self.graphs)

    def _eager(self, padded: dict[str, np.ndarray]) -> Any:
        with self.torch.inference_mode():
            return self._forward({k: self.torch.from_numpy(v).to(self.device) for k, v in padded.items()})

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        inputs = self._select_inputs(batch)
        rows, width = inputs["input_ids"].shape
        key = bucket_shape(rows, width, self.batches, self.seqs) if self.pad_to_buckets else (rows, width)
        padded = pad_batch(inputs, *key, pad_token_id=self.pad_token_id) if self.pad_to_buckets else inputs
        if not self.cuda_graphs:
            return self._eager(padded)[:rows].float().cpu().numpy()
        with self._lock:
            captured = self._graph(key)
            if captured is None:  # this bucket could not be captured
                out = self._eager(padded)
            else:
                graph, static, out = captured
                with torch.cuda.device(self.device):
                    for name, array in padded.items():
                        static[name].copy_(torch.from_numpy(array), non_blocking=True)
                    graph.replay()
            return out[:rows].float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "precision": self.precision, "device": self.device,
                "cuda_graphs": self.cuda_graphs, "graphs_captured": len(self.graphs),
                "eager_buckets": sorted(self.eager_buckets)}
