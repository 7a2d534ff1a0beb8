"""Export a trained cross-encoder to a verified artifact (ONNX fp32/int8/fp16, or torch bf16).

``export_model`` is the entry point; ``read_manifest`` / ``cpu_features`` are light helpers the runtime uses too.
onnx, onnxruntime and torch are imported only when an export runs.
"""

from fastrank.export.manifest import MANIFEST_NAME, MANIFEST_VERSION, cpu_features, read_manifest
from fastrank.export.onnx import INT8_CONFIGS, OPTIMIZE_LEVELS, PRECISIONS, export_model

__all__ = ["INT8_CONFIGS", "MANIFEST_NAME", "MANIFEST_VERSION", "OPTIMIZE_LEVELS", "PRECISIONS", "cpu_features",
           "export_model", "read_manifest"]
