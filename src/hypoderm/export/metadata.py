"""The exported model's metadata (torch-free): built from a checkpoint, written beside and into the ONNX file.

The dict is the `hypoderm-onnx/1` contract of docs/ARCHITECTURE.md; `hypoderm.inference` reads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hypoderm import __version__
from hypoderm.inference import DISCLAIMER, METADATA_FORMAT, METADATA_KEY, sidecar_path, validate_metadata
from hypoderm.preprocess import PreprocessSpec

DEFAULT_ABSTAIN_THRESHOLD = 0.6


def to_jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays, tuples and Paths -> plain JSON types (checkpoint metrics often hold them)."""
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        if hasattr(o, "item"):  # a 0-d torch tensor, without importing torch
            return o.item()
        return str(o)

    return json.loads(json.dumps(obj, default=default))


def input_block(spec: PreprocessSpec) -> dict[str, Any]:
    """The `input` block: tensor layout plus the one preprocessing definition (PreprocessSpec)."""
    return {"name": "input", "layout": "NCHW", "dtype": "float32", **spec.to_dict()}


def metadata_from_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A `hypoderm-onnx/1` metadata dict from a checkpoint dict (see hypoderm.checkpoint).

    `ood` is copied as is (None when the checkpoint has no fitted thresholds: the exporter then
    fits them from calibration images or sets the documented permissive default)."""
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    summary = dict(ckpt.get("data_summary") or {})
    threshold = ckpt.get("abstain_threshold")
    counts = summary.get("counts") or {}
    text = summary.get("summary") or (
        ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else "not recorded in the checkpoint")
    md = {
        "format": METADATA_FORMAT,
        "model_name": ckpt["model_name"],
        "architecture": ckpt.get("architecture", ckpt["model_name"]),
        "version": __version__,
        "precision": "fp32",
        "class_names": list(ckpt["class_names"]),
        "input": input_block(spec),
        "output": {"name": "logits"},
        "temperature": float(ckpt.get("temperature") or 1.0),
        "abstain_threshold": float(threshold if threshold is not None else DEFAULT_ABSTAIN_THRESHOLD),
        "ood": ckpt.get("ood"),
        "training_data": {"summary": text, "counts": counts,
                          **{k: v for k, v in summary.items() if k not in ("summary", "counts")}},
        "metrics": ckpt.get("metrics") or {},
        "epoch": ckpt.get("epoch"),
        "disclaimer": DISCLAIMER,
    }
    if int(ckpt.get("num_classes", len(md["class_names"]))) != len(md["class_names"]):
        raise ValueError(f"checkpoint has num_classes={ckpt['num_classes']} but {len(md['class_names'])} class names")
    return to_jsonable(md)


def write_metadata(onnx_path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Embed `metadata` in the ONNX file's metadata_props['hypoderm'] and write the sidecar JSON.
    Returns the sidecar path."""
    import onnx

    onnx_path = Path(onnx_path)
    metadata = to_jsonable(metadata)
    validate_metadata(metadata, source=str(onnx_path))
    model = onnx.load(str(onnx_path))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata, separators=(",", ":")))
    model.producer_name = "hypoderm"
    model.producer_version = __version__
    onnx.save(model, str(onnx_path))
    side = sidecar_path(onnx_path)
    side.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return side
