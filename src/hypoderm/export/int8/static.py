"""INT8 static quantisation with ONNX Runtime's tools (torch-free).

Recipe: `quant_pre_process` (shape inference + graph optimisation), then `quantize_static` with
per-channel INT8 weights, UINT8 activations and calibration over real images preprocessed exactly as
at inference. The settings that decide its accuracy are choices measured per model
(benchmarks/export/README.md, `int8_sweep.py`):

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

from hypoderm.export.int8.agreement import ImageLike, model_inputs
from hypoderm.inference import load_metadata
from hypoderm.inference.preprocess import PreprocessSpec

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
FORMATS = ("qdq", "qoperator")
SENSITIVE_GROUPS = ("first_conv", "depthwise", "eca", "head")
ENTROPY_HISTOGRAM_BINS = 2048  # TensorRT's entropy calibration uses 2048 bins too
# Chosen by measurement on the bundled model (benchmarks/export/README.md): see `DEFAULT_SETTINGS`.
DEFAULT_SETTINGS: dict[str, Any] = {"method": "minmax", "quant_format": "qdq", "per_channel": True,
                                    "keep_fp32": ()}


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
