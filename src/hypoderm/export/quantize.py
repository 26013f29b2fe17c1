"""INT8 static quantisation with ONNX Runtime's tools, and its agreement with fp32 (torch-free).

Recipe: `quant_pre_process` (shape inference + graph optimisation), then `quantize_static` with
per-channel INT8 weights, UINT8 activations and calibration over real images preprocessed exactly as
at inference. What the first attempt got wrong (MinMax ranges, every layer in INT8: -6.6 points of
macro-F1) is now a choice measured per model (benchmarks/export/README.md, `int8_sweep.py`):

- the calibration method (`minmax`, `entropy`, `percentile`): MinMax lets one outlier activation
  stretch a tensor's range and leaves too few levels for the rest;
- the format (`qdq`: Quantize/DequantizeLinear pairs that the runtime fuses; `qoperator`: QLinearConv
  and friends written out);
- layer groups kept in fp32 (`SENSITIVE_GROUPS`: the first convolution, the depthwise convolutions,
  ECA's 1-D convolutions and gates, the classifier head), since a few layers usually carry most of the
  quantisation error in depthwise-separable networks.

QDQ and QOperator models run on ONNX Runtime (desktop, Mobile, Web/WASM); the fp32 model stays the
reference. The Grad-CAM outputs (`features`, `cam_weights`) can be kept: their branch stays fp32 and
reads the INT8 head weight (onnxruntime 1.32's quantiser shares one DequantizeLinear between the Gemm
and the MatMul), so the file does not grow (1.36 vs 1.35 MB for the bundled model).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hypoderm.inference import OnnxPredictor, load_image, load_metadata
from hypoderm.inference.metadata import DEQUANTIZE_AT_LOAD, WEIGHT_ONLY_PRECISION
from hypoderm.inference.preprocess import PreprocessSpec, preprocess

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
FORMATS = ("qdq", "qoperator")
SENSITIVE_GROUPS = ("first_conv", "depthwise", "eca", "head")
ENTROPY_HISTOGRAM_BINS = 2048  # TensorRT's entropy calibration uses 2048 bins too
# Chosen by measurement on the bundled model (benchmarks/export/README.md): see `DEFAULT_SETTINGS`.
DEFAULT_SETTINGS: dict[str, Any] = {"method": "minmax", "quant_format": "qdq", "per_channel": True,
                                    "keep_fp32": ()}

ImageLike = str | os.PathLike | Image.Image | np.ndarray


def _as_images(items: Iterable[str | os.PathLike | Image.Image]) -> Iterable[Image.Image]:
    for item in items:
        yield item if isinstance(item, Image.Image) else load_image(item)


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


class ImageCalibrationReader:
    """ONNX Runtime CalibrationDataReader over images or preprocessed arrays, one input per call."""

    def __init__(self, images: Sequence[ImageLike], spec: PreprocessSpec, input_name: str = "input") -> None:
        self._arrays = [x[None] for x in model_inputs(images, spec)]
        self._input_name = input_name
        self._it = iter(self._arrays)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self._input_name: x}

    def rewind(self) -> None:
        self._it = iter(self._arrays)


def sensitive_nodes(onnx_path: str | os.PathLike, groups: Iterable[str]) -> list[str]:
    """Names of the nodes of `onnx_path` in the given `SENSITIVE_GROUPS`, found from the graph's
    structure (not from layer names, so any exported model works):
    first_conv: the first Conv; depthwise: Conv with group == input channels > 1; eca: 1-D Conv
    (rank-3 weight) plus the Sigmoid and Mul of its gate; head: Gemm and MatMul nodes."""
    import onnx

    groups = list(groups)
    unknown = sorted(set(groups) - set(SENSITIVE_GROUPS))
    if unknown:
        raise ValueError(f"unknown layer group(s) {unknown}; choose from {', '.join(SENSITIVE_GROUPS)}")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    init = {t.name: list(t.dims) for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    names: list[str] = []
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if "first_conv" in groups and convs:
        names.append(convs[0].name)
    for n in convs:
        w = init.get(n.input[1]) if len(n.input) > 1 else None
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if "depthwise" in groups and w is not None and len(w) == 4 and group > 1 and w[1] == 1:
            names.append(n.name)
        if "eca" in groups and w is not None and len(w) == 3:
            names.append(n.name)
            # the gate: Conv -> (Reshape) -> Sigmoid -> Mul
            frontier = list(n.output)
            for _ in range(3):
                nxt = [c for o in frontier for c in consumers.get(o, [])]
                names += [c.name for c in nxt if c.op_type in ("Sigmoid", "Mul")]
                frontier = [o for c in nxt if c.op_type in ("Reshape", "Sigmoid") for o in c.output]
    if "head" in groups:
        names += [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    return list(dict.fromkeys(names))


def off_path_nodes(onnx_path: str | os.PathLike, output: str) -> list[str]:
    """Names of the nodes that `output` does not depend on (e.g. the Grad-CAM branch next to the logits)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    needed: set[str] = set()
    stack = [output]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in needed:
            needed.add(node.name)
            stack += list(node.input)
    return [n.name for n in graph.node if n.name not in needed]


def quantize_int8(fp32_onnx: str | os.PathLike, calibration_images: Sequence[ImageLike],
                  out_path: str | os.PathLike, per_channel: bool = True, max_images: int = 256, *,
                  method: str = DEFAULT_SETTINGS["method"], quant_format: str = DEFAULT_SETTINGS["quant_format"],
                  keep_fp32: Iterable[str] = DEFAULT_SETTINGS["keep_fp32"], keep_gradcam: bool = False) -> Path:
    """Statically quantise `fp32_onnx` to INT8 calibrated on `calibration_images` (files, PIL images
    or preprocessed CHW arrays) with calibration `method`, `quant_format` and the layer groups
    `keep_fp32` left in fp32; writes `out_path` plus its sidecar JSON (metadata copied, precision
    'int8', the settings under `quantization`). With `keep_gradcam` the Grad-CAM outputs of the fp32
    model are kept (their small branch in fp32); without, the INT8 model answers only. Returns `out_path`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from hypoderm.inference.metadata import write_metadata

    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    keep_fp32 = _check_settings(method, quant_format, keep_fp32, len(calibration_images))
    md = load_metadata(fp32_onnx)
    spec = PreprocessSpec.from_dict(md["input"])
    images = list(calibration_images)[:max_images]

    class _Reader(ImageCalibrationReader, CalibrationDataReader):
        pass

    input_name = md.get("input", {}).get("name", "input")
    logits_name = (md.get("output") or {}).get("name", "logits")
    reader = _Reader(images, spec, input_name)
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    extra: dict[str, Any] = {"CalibTensorRangeSymmetric": False}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        source = fp32_onnx
        if md.get("gradcam") and not keep_gradcam:
            import onnx.utils

            source = Path(tmp) / "logits.onnx"
            onnx.utils.extract_model(str(fp32_onnx), str(source), [input_name], [logits_name])
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=False)
        excluded = sensitive_nodes(pre, keep_fp32)
        if md.get("gradcam") and keep_gradcam:
            # The Grad-CAM branch (cam_weights = the head's weights times a one-hot-like mask) stays fp32;
            # its MatMul reads the INT8 head weight through the same DequantizeLinear as the Gemm,
            # so the weight is stored once and `features` is the INT8 model's own feature map.
            excluded += [n for n in off_path_nodes(pre, logits_name) if n not in excluded]
        cache = _entropy_ranges(pre, reader, calibrate, Path(tmp)) if method == "entropy" else None
        quantize_static(str(pre), str(out_path), reader, calibration_cache_path=cache,
                        quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                        per_channel=per_channel, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=calibrate, nodes_to_exclude=excluded,
                        extra_options=extra)
    if not keep_gradcam:
        md = {k: v for k, v in md.items() if k != "gradcam"}
    quantization = {"tool": "onnxruntime.quantization.quantize_static",
                    "format": "QDQ" if quant_format == "qdq" else "QOperator",
                    "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
                    "activations": "uint8", "calibration": method, "calibration_images": len(images),
                    "fp32_layer_groups": keep_fp32, "fp32_nodes": len(excluded), "gradcam": bool(md.get("gradcam")),
                    "fp32_model": fp32_onnx.name}
    write_metadata(out_path, {**md, "precision": "int8", "quantization": quantization})
    return out_path


def _check_settings(method: str, quant_format: str, keep_fp32: Iterable[str], n_images: int) -> list[str]:
    """ValueError naming the first unknown setting; the layer groups to keep in fp32 as a list."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(CALIBRATION_METHODS)}")
    if quant_format not in FORMATS:
        raise ValueError(f"unknown quantisation format {quant_format!r}; choose from {', '.join(FORMATS)}")
    groups = list(keep_fp32)
    unknown = sorted(set(groups) - set(SENSITIVE_GROUPS))
    if unknown:
        raise ValueError(f"unknown layer group(s) {unknown} to keep in fp32; choose from {', '.join(SENSITIVE_GROUPS)}")
    if n_images == 0:
        raise ValueError("INT8 calibration needs at least one image")
    return groups


def _entropy_ranges(pre: Path, reader: Any, calibrate: Any, tmp: Path) -> Path:
    """Entropy calibration with a finer histogram, as a ranges cache for quantize_static.

    quantize_static's entropy calibration uses 128 histogram bins and 128 quantised bins, which leaves the
    KL search one candidate, the full range: MinMax under another name (measured: identical scales)."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(pre, None, augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=calibrate,
                                   extra_options={"num_bins": ENTROPY_HISTOGRAM_BINS,
                                                  "num_quantized_bins": 128, "symmetric": False})
    calibrator.collect_data(reader)
    cache = tmp / "ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    reader.rewind()
    return cache


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def _scores(p32: np.ndarray, p8: np.ndarray, y: np.ndarray | None, n_classes: int) -> dict[str, Any]:
    a32, a8 = p32.argmax(1), p8.argmax(1)
    out: dict[str, Any] = {"images": int(len(a32)), "top1_agreement": float((a32 == a8).mean()),
                           "max_abs_prob_diff": float(np.abs(p32 - p8).max()),
                           "mean_abs_prob_diff": float(np.abs(p32 - p8).mean())}
    if y is not None:
        out["fp32"] = {"accuracy": float((a32 == y).mean()), "macro_f1": _macro_f1(y, a32, n_classes)}
        out["int8"] = {"accuracy": float((a8 == y).mean()), "macro_f1": _macro_f1(y, a8, n_classes)}
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


# ---- weight-only INT8: smaller file, fp32 compute -------------------------------------------------
# Static INT8 (above) keeps accuracy but is slower than fp32 in onnxruntime-web (no fast INT8 depthwise
# kernels; the Q/DQ work around them costs more than INT8 saves). Weight-only INT8 only *stores* the
# Conv / Gemm / MatMul weights as INT8 (DequantizeLinear on the initializer, activations untouched).
# ONNX Runtime's constant folding computes DequantizeLinear of a constant at session creation when
# `session.disable_quant_qdq` is "1" (without it, it keeps DequantizeLinear for its QDQ fusions and
# runs it on every call); the graph it then runs is the fp32 graph with rounded weights.
# (WEIGHT_ONLY_PRECISION and DEQUANTIZE_AT_LOAD: hypoderm.inference.metadata, the contract's home)


def _weight_axis(node: Any, rank: int) -> int:
    """The output-channel axis of a weight: Conv (M, C/g, k...) 0; Gemm B (N, K) 0 with transB,
    else (K, N) 1; MatMul B (..., K, N) the last."""
    if node.op_type == "Gemm":
        return 0 if next((a.i for a in node.attribute if a.name == "transB"), 0) else 1
    return rank - 1 if node.op_type == "MatMul" else 0


def quantize_weights_int8(fp32_onnx: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write `fp32_onnx` with every Conv / Gemm / MatMul weight initializer stored as INT8, symmetric
    per output channel (scale = max|w| / 127, zero point 0), read through DequantizeLinear; biases,
    other initializers and all activations stay fp32. A weight shared by several nodes (the head's,
    read by the Grad-CAM branch too) is stored once. The sidecar JSON is the fp32 model's with
    precision 'int8-weights' and the settings under `quantization`. Returns `out_path`."""
    import onnx
    from onnx import helper, numpy_helper

    from hypoderm.inference.metadata import write_metadata

    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    md = load_metadata(fp32_onnx)
    model = onnx.load(str(fp32_onnx))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise ValueError(f"{fp32_onnx.name}: per-channel DequantizeLinear needs opset >= 13, the model has {opset}")
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    axes: dict[str, int] = {}  # weight name -> output-channel axis (its first consumer's)
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in inits:
            w = inits[node.input[1]]
            if w.data_type == onnx.TensorProto.FLOAT and len(w.dims) >= 2:
                axes.setdefault(w.name, _weight_axis(node, len(w.dims)))
    dq_nodes, weights = [], 0
    for name, axis in axes.items():
        w = numpy_helper.to_array(inits[name])
        other = tuple(i for i in range(w.ndim) if i != axis)
        scale = (np.abs(w).max(axis=other) / 127).astype(np.float32)
        scale[scale == 0] = 1.0  # an all-zero channel stays zero
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.initializer.remove(inits[name])
        graph.initializer.extend([numpy_helper.from_array(q, name + "_int8"),
                                  numpy_helper.from_array(scale, name + "_scale"),
                                  numpy_helper.from_array(np.zeros_like(scale, np.int8), name + "_zero_point")])
        dq_nodes.append(helper.make_node("DequantizeLinear", [name + "_int8", name + "_scale", name + "_zero_point"],
                                         [name], name=name + "_DequantizeLinear", axis=axis))
        weights += int(w.size)
    if not dq_nodes:
        raise ValueError(f"{fp32_onnx.name} has no fp32 Conv / Gemm / MatMul weight initializers to quantise")
    nodes = dq_nodes + list(graph.node)  # DequantizeLinear first: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    write_metadata(out_path, {**{k: v for k, v in md.items() if k != "parity"}, "precision": WEIGHT_ONLY_PRECISION,
                              "quantization": {"tool": "hypoderm.export.quantize.quantize_weights_int8",
                                               "format": "weight-only DequantizeLinear",
                                               "weights": "int8 per-channel symmetric", "activations": "fp32",
                                               "weight_tensors": len(dq_nodes), "weight_values": weights,
                                               "session_config": DEQUANTIZE_AT_LOAD,
                                               "fp32_model": fp32_onnx.name,
                                               # the fp32 source's check against PyTorch; this model's own
                                               # comparison with fp32 is `int8_vs_fp32` (hypoderm export)
                                               "fp32_parity": md.get("parity")}})
    return out_path
