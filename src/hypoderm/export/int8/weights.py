"""Weight-only INT8: Conv / Gemm / MatMul weights stored as INT8 per output channel behind DequantizeLinear,
activations fp32; ONNX Runtime dequantises them once at session creation (torch-free)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hypoderm.inference import load_metadata
from hypoderm.inference.metadata import DEQUANTIZE_AT_LOAD, WEIGHT_ONLY_PRECISION

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


def quantize_graph_weights(model: Any) -> tuple[int, int]:
    """In place: every fp32 Conv / Gemm / MatMul weight initializer of the ONNX `model` stored as INT8, symmetric
    per output channel (scale = max|w| / 127, zero point 0), read through DequantizeLinear. Returns (weight
    tensors, weight values) quantised. ValueError when there is nothing to quantise or the opset is too old."""
    import onnx
    from onnx import helper, numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise ValueError(f"per-channel DequantizeLinear needs opset >= 13, the model has {opset}")
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
        raise ValueError("no fp32 Conv / Gemm / MatMul weight initializers to quantise")
    nodes = dq_nodes + list(graph.node)  # DequantizeLinear first: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    return len(dq_nodes), weights


def quantize_weights_int8(fp32_onnx: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write `fp32_onnx` with every Conv / Gemm / MatMul weight initializer stored as INT8, symmetric
    per output channel (scale = max|w| / 127, zero point 0), read through DequantizeLinear; biases,
    other initializers and all activations stay fp32. A weight shared by several nodes (the head's,
    read by the Grad-CAM branch too) is stored once. The sidecar JSON is the fp32 model's with
    precision 'int8-weights' and the settings under `quantization`. Returns `out_path`."""
    import onnx

    from hypoderm.inference.metadata import write_metadata

    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    md = load_metadata(fp32_onnx)
    model = onnx.load(str(fp32_onnx))
    try:
        tensors, weights = quantize_graph_weights(model)
    except ValueError as e:
        raise ValueError(f"{fp32_onnx.name}: {e}") from e
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    write_metadata(out_path, {**{k: v for k, v in md.items() if k != "parity"}, "precision": WEIGHT_ONLY_PRECISION,
                              "quantization": {"tool": "hypoderm.export.int8.quantize_weights_int8",
                                               "format": "weight-only DequantizeLinear",
                                               "weights": "int8 per-channel symmetric", "activations": "fp32",
                                               "weight_tensors": tensors, "weight_values": weights,
                                               "session_config": DEQUANTIZE_AT_LOAD,
                                               "fp32_model": fp32_onnx.name,
                                               # the fp32 source's check against PyTorch; this model's own
                                               # comparison with fp32 is `int8_vs_fp32` (hypoderm export)
                                               "fp32_parity": md.get("parity")}})
    return out_path
