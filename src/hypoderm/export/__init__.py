"""Export for phones and browsers: ONNX (fp32, INT8) and TorchScript, with metadata
(the metadata itself lives in `hypoderm.inference.metadata`).

Formats and the runtimes they serve:
- ONNX fp32 / INT8 (QDQ): ONNX Runtime (desktop/server), ONNX Runtime Mobile (Android, iOS),
  ONNX Runtime Web (browsers, WASM; the hypoderm web app).
- TorchScript: LibTorch (C++) and the legacy PyTorch Mobile runtime.

Names are imported lazily so that the torch-free parts (`quantize_int8`, `agreement_report`,
`bench_onnx`) do not import torch. `export_bundle` is `hypoderm export` as a function (`hypoderm.export.bundle`).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_onnx": "hypoderm.export.onnx",
    "export_torchscript": "hypoderm.export.onnx",
    "check_parity": "hypoderm.export.onnx",
    "ExportParityError": "hypoderm.export.onnx",
    "PARITY_TOL": "hypoderm.export.onnx",
    "quantize_int8": "hypoderm.export.int8",
    "agreement_report": "hypoderm.export.int8",
    "bench_onnx": "hypoderm.export.latency",
    "export_bundle": "hypoderm.export.bundle",
    "ExportOptions": "hypoderm.export.bundle",
    "ExportError": "hypoderm.export.bundle",
    "synthetic_skin_images": "hypoderm.export.samples",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hypoderm.export' has no attribute {name!r}")
