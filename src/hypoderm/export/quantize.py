"""INT8 static quantisation with ONNX Runtime's tools, and its agreement with fp32 (torch-free).

Recipe (ONNX Runtime's recommended one for CNNs on CPU): `quant_pre_process` (shape inference +
graph optimisation), then `quantize_static` in QDQ format, per-channel INT8 weights, UINT8
activations, MinMax calibration over real images preprocessed exactly as at inference.
QDQ models run on ONNX Runtime (desktop, Mobile, Web/WASM); the fp32 model stays the reference.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from hypoderm.inference import OnnxPredictor, load_image, load_metadata, prepare
from hypoderm.preprocess import PreprocessSpec, preprocess


def _as_images(items: Iterable[str | os.PathLike | Image.Image]) -> Iterable[Image.Image]:
    for item in items:
        yield item if isinstance(item, Image.Image) else load_image(item)


class ImageCalibrationReader:
    """ONNX Runtime CalibrationDataReader over image files, one preprocessed image per call."""

    def __init__(self, images: Sequence[str | os.PathLike | Image.Image], spec: PreprocessSpec,
                 input_name: str = "input") -> None:
        self._arrays = [preprocess(im, spec)[None] for im in _as_images(images)]
        self._input_name = input_name
        self._it = iter(self._arrays)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self._input_name: x}

    def rewind(self) -> None:
        self._it = iter(self._arrays)


def quantize_int8(fp32_onnx: str | os.PathLike, calibration_images: Sequence[str | os.PathLike | Image.Image],
                  out_path: str | os.PathLike, per_channel: bool = True, max_images: int = 256) -> Path:
    """Statically quantise `fp32_onnx` to INT8 (QDQ) calibrated on `calibration_images`; writes
    `out_path` plus its sidecar JSON (metadata copied, precision 'int8'). Returns `out_path`."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from hypoderm.export.metadata import write_metadata

    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    if not calibration_images:
        raise ValueError("INT8 calibration needs at least one image")
    md = load_metadata(fp32_onnx)
    spec = PreprocessSpec.from_dict(md["input"])
    images = list(calibration_images)[:max_images]

    class _Reader(ImageCalibrationReader, CalibrationDataReader):
        pass

    reader = _Reader(images, spec, md.get("input", {}).get("name", "input"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        source = fp32_onnx
        if md.get("gradcam"):
            # The Grad-CAM outputs reuse the head's weights in MatMuls that static quantisation
            # cannot share; the INT8 model answers only (its metadata drops `gradcam`).
            import onnx.utils

            source = Path(tmp) / "logits.onnx"
            onnx.utils.extract_model(str(fp32_onnx), str(source), [md.get("input", {}).get("name", "input")],
                                     [(md.get("output") or {}).get("name", "logits")])
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=False)
        quantize_static(str(pre), str(out_path), reader, quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    md = {k: v for k, v in md.items() if k != "gradcam"}
    write_metadata(out_path, {**md, "precision": "int8",
                              "quantization": {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                                               "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
                                               "activations": "uint8", "calibration": "MinMax",
                                               "calibration_images": len(images),
                                               "fp32_model": fp32_onnx.name}})
    return out_path


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def agreement_report(fp32_onnx: str | os.PathLike, int8_onnx: str | os.PathLike,
                     images: Sequence[str | os.PathLike | Image.Image],
                     labels: Sequence[int] | None = None) -> dict[str, Any]:
    """Top-1 agreement of the INT8 model with fp32 on `images`; with `labels` (class indices)
    also accuracy and macro-F1 of both, and the INT8 - fp32 differences (in points, x100)."""
    fp32, int8 = OnnxPredictor(fp32_onnx), OnnxPredictor(int8_onnx)
    x = np.stack([prepare(im, fp32.spec)[1] for im in _as_images(images)])
    p32 = np.concatenate([fp32.predict_array(x[i: i + 32]) for i in range(0, len(x), 32)])
    p8 = np.concatenate([int8.predict_array(x[i: i + 32]) for i in range(0, len(x), 32)])
    a32, a8 = p32.argmax(1), p8.argmax(1)
    report: dict[str, Any] = {"images": int(len(x)), "top1_agreement": float((a32 == a8).mean()),
                              "max_abs_prob_diff": float(np.abs(p32 - p8).max())}
    if labels is not None:
        y = np.asarray(labels, dtype=int)
        if y.shape != a32.shape:
            raise ValueError(f"{len(y)} labels for {len(a32)} images")
        n = len(fp32.class_names)
        report["fp32"] = {"accuracy": float((a32 == y).mean()), "macro_f1": _macro_f1(y, a32, n)}
        report["int8"] = {"accuracy": float((a8 == y).mean()), "macro_f1": _macro_f1(y, a8, n)}
        report["delta_points"] = {k: 100 * (report["int8"][k] - report["fp32"][k]) for k in ("accuracy", "macro_f1")}
    return report
