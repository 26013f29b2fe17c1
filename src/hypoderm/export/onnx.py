"""PyTorch -> ONNX (and TorchScript) export with a parity check that fails loudly.

Exporter choice: torch 2.14 defaults to the torch.export-based ("dynamo") exporter, which needs
the `onnxscript` package (not a hypoderm dependency) and emits a graph that onnxslim then has to
clean anyway. The TorchScript-based exporter (`dynamo=False`) gives a small, clean opset-17 graph
for these CNNs (Conv/Relu/HardSigmoid/HardSwish/GlobalAveragePool/Gemm) with a symbolic batch
axis, which is what ONNX Runtime Mobile and ONNX Runtime Web want; onnxslim then folds constants
and fuses the rest. Its deprecation warning is silenced here on purpose.

The parity check is end to end: the same PIL images go through the *reference* preprocessing
(the checkpoint's PreprocessSpec) into PyTorch, and through the preprocessing *read back from the
exported metadata* into ONNX Runtime, so a wrong mean/std/size in the metadata is caught as well
as a wrong graph.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from hypoderm.errors import HypodermError, UsageError
from hypoderm.export.samples import synthetic_skin_images
from hypoderm.inference import OnnxPredictor, softmax
from hypoderm.inference.metadata import to_jsonable, write_metadata
from hypoderm.inference.ood import validate_ood, with_gate
from hypoderm.inference.preprocess import PreprocessSpec, preprocess

PARITY_TOL = 1e-4  # max abs difference of probabilities, fp32


class ExportParityError(HypodermError, RuntimeError):
    """The exported model's probabilities differ from PyTorch's by more than the tolerance."""


def torch_probabilities(model: nn.Module, images: Sequence[Image.Image], spec: PreprocessSpec,
                        temperature: float = 1.0) -> np.ndarray:
    """Reference probabilities: preprocess with `spec`, run the PyTorch model in eval mode."""
    x = torch.from_numpy(np.stack([preprocess(im, spec) for im in images]))
    model.eval()
    with torch.inference_mode():
        logits = model(x).double().numpy()
    return softmax(logits, temperature)


def check_parity(model: nn.Module, onnx_path: str | os.PathLike, images: Sequence[Image.Image],
                 reference_spec: PreprocessSpec, tol: float = PARITY_TOL) -> dict[str, Any]:
    """Compare PyTorch (reference preprocessing) with ONNX Runtime (the file's own metadata), image
    by image and as one batch (checks the dynamic batch axis). Raises ExportParityError."""
    predictor = OnnxPredictor(onnx_path, threads=1)
    md = predictor.metadata
    ref = torch_probabilities(model, images, reference_spec, float(md["temperature"]))
    x = np.stack([preprocess(im, predictor.spec) for im in images])
    batched = predictor.predict_array(x)
    single = np.concatenate([predictor.predict_array(x[i: i + 1]) for i in range(len(x))])
    diff = float(max(np.abs(batched - ref).max(), np.abs(single - ref).max()))
    report = {"max_abs_diff": diff, "tolerance": tol, "images": len(images)}
    if not np.isfinite(diff) or diff > tol:
        hint = ""
        if predictor.spec != reference_spec:
            hint = (f"; the exported preprocessing {predictor.spec} differs from the reference "
                    f"{reference_spec}")
        raise ExportParityError(
            f"ONNX Runtime and PyTorch disagree on {onnx_path}: max |p_onnx - p_torch| = {diff:.3g} > {tol:g} "
            f"over {len(images)} images{hint}. The export is not trustworthy and was not accepted.")
    return report


def _export_graph(model: nn.Module, size: int, path: Path, opset: int) -> dict[str, Any] | None:
    """Export `model`; with the Grad-CAM outputs (features, cam_weights) when its structure allows
    (hypoderm.export.gradcam). Returns the metadata's `gradcam` block, or None without them."""
    from hypoderm.export.gradcam import (
        CAM_WEIGHTS_OUTPUT,
        FEATURES_OUTPUT,
        LOGITS_OUTPUT,
        UnsupportedModelError,
        gradcam_graph,
    )

    dummy = torch.zeros(1, 3, size, size)
    try:
        graph: nn.Module = gradcam_graph(model, size)
        names = [LOGITS_OUTPUT, FEATURES_OUTPUT, CAM_WEIGHTS_OUTPUT]
        cam = {"method": "grad-cam", "layer": graph.layer, "features": FEATURES_OUTPUT,
               "cam_weights": CAM_WEIGHTS_OUTPUT}
    except UnsupportedModelError as e:
        warnings.warn(f"exported without Grad-CAM outputs: {e}", stacklevel=2)
        graph, names, cam = model, [LOGITS_OUTPUT], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation notices (see module docstring)
        torch.onnx.export(graph, (dummy,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=names,
                          dynamic_axes={"input": {0: "batch"}, **{n: {0: "batch"} for n in names}})
    return cam


def export_onnx(model: nn.Module, metadata: dict[str, Any], out_path: str | os.PathLike, opset: int = 17,
                simplify: bool = True, *, reference_spec: PreprocessSpec | None = None,
                parity_images: Sequence[Image.Image] | None = None, tol: float = PARITY_TOL) -> Path:
    """Export `model` to `out_path` (.onnx) with `metadata` embedded and as a sidecar JSON, parity-checked
    (see `export_onnx_checked`, which also returns the written metadata)."""
    return export_onnx_checked(model, metadata, out_path, opset, simplify, reference_spec=reference_spec,
                               parity_images=parity_images, tol=tol)[0]


def export_onnx_checked(model: nn.Module, metadata: dict[str, Any], out_path: str | os.PathLike, opset: int = 17,
                        simplify: bool = True, *, reference_spec: PreprocessSpec | None = None,
                        parity_images: Sequence[Image.Image] | None = None,
                        tol: float = PARITY_TOL) -> tuple[Path, dict[str, Any]]:
    """Export `model` to a staging folder, run the parity check there (ExportParityError when it fails:
    nothing is written), then write `out_path` (.onnx) and its sidecar once, with the parity result in the
    metadata. Returns (out_path, the metadata written).

    `reference_spec`: the preprocessing the model was trained with (default: the metadata's).
    `parity_images`: real-looking PIL images (default: 6 synthetic skin photos)."""
    if opset < 17:
        raise UsageError(f"--opset must be >= 17 (the graph uses opset-17 operators), got {opset}")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise UsageError(f"--out must end in .onnx, got {out_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    metadata = to_jsonable(dict(metadata))
    # the not-skin gate is a property of images, not of the network: every export carries it in full
    default_source = {"source": "default (no thresholds in checkpoint or calibration)"}
    metadata["ood"] = with_gate(metadata.get("ood") or default_source)
    validate_ood(metadata["ood"])
    spec = PreprocessSpec.from_dict(metadata["input"])
    reference_spec = reference_spec or spec
    model = model.eval().cpu()

    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        raw, staged = Path(tmp) / "raw.onnx", Path(tmp) / "staged.onnx"
        cam = _export_graph(model, spec.size, raw, opset)
        metadata["output"] = {**(metadata.get("output") or {}), "name": "logits"}
        if cam:
            metadata["gradcam"] = cam
        else:
            metadata.pop("gradcam", None)
        import onnx

        graph = onnx.load(str(raw))
        if simplify:
            import onnxslim

            graph = onnxslim.slim(graph)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(staged))
        write_metadata(staged, metadata)
        images = list(parity_images) if parity_images else synthetic_skin_images(6)
        report = check_parity(model, staged, images, reference_spec, tol)
        metadata["parity"] = {**report, "runtime": "onnxruntime", "against": "pytorch"}
        write_metadata(out_path, metadata, source=staged)
    return out_path, metadata


def export_torchscript(model: nn.Module, metadata: dict[str, Any], out_path: str | os.PathLike,
                       parity_images: Sequence[Image.Image] | None = None, tol: float = PARITY_TOL) -> Path:
    """Trace to TorchScript (`.pt`, for LibTorch / PyTorch Mobile runtimes), metadata as the extra
    file `hypoderm.json` and a sidecar JSON; parity-checked against the eager model."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    metadata = to_jsonable({**metadata, "format_variant": "torchscript"})
    spec = PreprocessSpec.from_dict(metadata["input"])
    model = model.eval().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.zeros(1, 3, spec.size, spec.size))
        torch.jit.save(traced, str(out_path), _extra_files={"hypoderm.json": json.dumps(metadata)})
        loaded = torch.jit.load(str(out_path))
    images = list(parity_images) if parity_images else synthetic_skin_images(6)
    temperature = float(metadata["temperature"])
    ref = torch_probabilities(model, images, spec, temperature)
    got = torch_probabilities(loaded, images, spec, temperature)
    diff = float(np.abs(ref - got).max())
    if diff > tol:
        out_path.unlink(missing_ok=True)
        raise ExportParityError(f"TorchScript and eager PyTorch disagree: max diff {diff:.3g} > {tol:g}")
    sidecar = {**metadata, "parity": {"max_abs_diff": diff}}
    out_path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return out_path
