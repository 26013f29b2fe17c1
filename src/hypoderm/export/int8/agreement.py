"""How an INT8 model agrees with its fp32 source on real inputs: top-1 agreement, probability changes,
accuracy and macro-F1 of both, per view, and the Grad-CAM maps (torch-free)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from hypoderm.inference import OnnxPredictor, load_image
from hypoderm.inference.preprocess import PreprocessSpec, preprocess
from hypoderm.metrics import macro_f1

ImageLike = str | os.PathLike | Image.Image | np.ndarray


def model_inputs(items: Sequence[ImageLike], spec: PreprocessSpec) -> np.ndarray:
    """(N, 3, size, size) float32 model inputs: image files and PIL images are preprocessed as at
    inference; arrays are taken as already-preprocessed CHW inputs (e.g. close-up views), checked."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            if item.shape != (3, spec.size, spec.size) or item.dtype != np.float32:
                raise ValueError(f"input {i}: a preprocessed array must be float32 (3, {spec.size}, {spec.size}), "
                                 f"got {item.dtype} {item.shape}")
            out.append(item)
        else:
            im = item if isinstance(item, Image.Image) else load_image(item)
            out.append(preprocess(im, spec))
    return np.stack(out) if out else np.zeros((0, 3, spec.size, spec.size), np.float32)


def _scores(p32: np.ndarray, p8: np.ndarray, y: np.ndarray | None, n_classes: int) -> dict[str, Any]:
    a32, a8 = p32.argmax(1), p8.argmax(1)
    out: dict[str, Any] = {"images": int(len(a32)), "top1_agreement": float((a32 == a8).mean()),
                           "max_abs_prob_diff": float(np.abs(p32 - p8).max()),
                           "mean_abs_prob_diff": float(np.abs(p32 - p8).mean())}
    if y is not None:
        out["fp32"] = {"accuracy": float((a32 == y).mean()), "macro_f1": macro_f1(y, a32, n_classes)}
        out["int8"] = {"accuracy": float((a8 == y).mean()), "macro_f1": macro_f1(y, a8, n_classes)}
        out["delta_points"] = {k: 100 * (out["int8"][k] - out["fp32"][k]) for k in ("accuracy", "macro_f1")}
    return out


def _gradcam_correlation(fp32: OnnxPredictor, int8: OnnxPredictor, x: np.ndarray,
                         classes: np.ndarray) -> dict[str, float]:
    """Pearson correlation of the two models' Grad-CAM maps (fp32's top class, feature resolution):
    mean and minimum over the inputs. An INT8 model whose maps drift would mislead the user."""
    from hypoderm.inference.explain import gradcam_map

    if fp32.cam_names is None or int8.cam_names is None:
        raise ValueError("both models need their Grad-CAM outputs to compare the maps")
    corr = []
    for i in range(0, len(x), 32):
        f32, w32 = fp32.session.run(list(fp32.cam_names), {fp32.input_name: x[i: i + 32]})
        f8, w8 = int8.session.run(list(int8.cam_names), {int8.input_name: x[i: i + 32]})
        for j in range(len(f32)):
            h, w = f32.shape[2:]
            a = gradcam_map(f32[j], w32[j], int(classes[i + j]), h, w).ravel()
            b = gradcam_map(f8[j], w8[j], int(classes[i + j]), h, w).ravel()
            corr.append(1.0 if a.std() == 0 and b.std() == 0 else
                        0.0 if a.std() == 0 or b.std() == 0 else float(np.corrcoef(a, b)[0, 1]))
    return {"mean": float(np.mean(corr)), "min": float(np.min(corr))}


def agreement_report(fp32_onnx: str | os.PathLike, int8_onnx: str | os.PathLike,
                     images: Sequence[ImageLike], labels: Sequence[int] | None = None,
                     views: Sequence[str] | None = None) -> dict[str, Any]:
    """Top-1 agreement of the INT8 model with fp32 on `images` (files, PIL images or preprocessed CHW
    arrays) and the largest and mean probability change; with `labels` (class indices) also accuracy and
    macro-F1 of both and the INT8 - fp32 differences in points (x100). With `views` (one name per
    image, e.g. "photo" / "closeup") the same numbers per view land under `by_view`. When both models
    have Grad-CAM outputs, `gradcam_correlation` compares their maps."""
    if len(images) == 0:
        raise ValueError("the agreement report needs at least one image")
    fp32, int8 = OnnxPredictor(fp32_onnx), OnnxPredictor(int8_onnx)
    x = model_inputs(images, fp32.spec)
    p32 = np.concatenate([fp32.predict_array(x[i: i + 32]) for i in range(0, len(x), 32)])
    p8 = np.concatenate([int8.predict_array(x[i: i + 32]) for i in range(0, len(x), 32)])
    y = None
    if labels is not None:
        y = np.asarray(labels, dtype=int)
        if y.shape != (len(x),):
            raise ValueError(f"{len(y)} labels for {len(x)} images")
    n = len(fp32.class_names)
    report = _scores(p32, p8, y, n)
    if fp32.has_gradcam and int8.has_gradcam:
        report["gradcam_correlation"] = _gradcam_correlation(fp32, int8, x, p32.argmax(1))
    if views is not None:
        v = np.asarray(views)
        if v.shape != (len(x),):
            raise ValueError(f"{len(v)} view names for {len(x)} images")
        report["by_view"] = {name: _scores(p32[v == name], p8[v == name], None if y is None else y[v == name], n)
                             for name in dict.fromkeys(views)}
    return report
