"""Put the learned skin check (`hypoderm.inference.skincheck`) into an exported model's ONNX graph.

The shipped check is `assets/skin_check.onnx` (INT8-stored weights) with its block in `assets/skin_check.json`
(fitted by benchmarks/nonskin/learned/fit_skin_check.py). `attach` copies its nodes into the model's graph
under the prefix `skin/`, feeds them the model's own input tensor (re-normalised when the model's mean/std differ
from ImageNet's, which the check was trained with) and adds the output `skin_score`; the model's metadata gets
the block under `ood.skin_check`. One file, one session run: the page, the API and the CLI get the same score.
Torch-free (onnx + numpy).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hypoderm.inference.metadata import load_metadata, write_metadata
from hypoderm.inference.skincheck import OUTPUT, validate_skin_check

PREFIX = "skin/"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def shipped_skin_check() -> tuple[Path, dict[str, Any]] | None:
    """(the shipped check's ONNX file, its block), or None when this install has none."""
    assets = resources.files("hypoderm") / "assets"
    onnx_file, block_file = Path(str(assets / "skin_check.onnx")), Path(str(assets / "skin_check.json"))
    if not (onnx_file.is_file() and block_file.is_file()):
        return None
    block = json.loads(block_file.read_text())
    validate_skin_check(block)
    return onnx_file, block


def _renormalise(graph: Any, source: str, mean: list[float], std: list[float]) -> str:
    """Nodes turning the model's input (normalised with mean/std) into ImageNet's normalisation; returns the name
    of the tensor the check reads. x_in = (x * std + mean - m_in) / s_in = x * a + b, per channel."""
    from onnx import helper, numpy_helper

    if np.allclose(mean, IMAGENET_MEAN) and np.allclose(std, IMAGENET_STD):
        return source
    a = (np.asarray(std) / np.asarray(IMAGENET_STD)).astype(np.float32).reshape(1, 3, 1, 1)
    b = ((np.asarray(mean) - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)).astype(np.float32)
    graph.initializer.extend([numpy_helper.from_array(a, PREFIX + "renorm_a"),
                              numpy_helper.from_array(b.reshape(1, 3, 1, 1), PREFIX + "renorm_b")])
    graph.node.extend([helper.make_node("Mul", [source, PREFIX + "renorm_a"], [PREFIX + "scaled"]),
                       helper.make_node("Add", [PREFIX + "scaled", PREFIX + "renorm_b"], [PREFIX + "renormed"])])
    return PREFIX + "renormed"


def _resize_to(graph: Any, source: str, model_size: int, check_size: Any) -> str:
    """Nodes resizing the model's square input to the size the check was fitted at (its block's `input_size`),
    bilinear with half-pixel centres (PyTorch's `interpolate(..., "bilinear", align_corners=False)`): a check
    fitted on 128 px crops, attached to a 160 px model, still sees 128 px, so its thresholds still hold. Returns
    the name of the tensor the check reads (`source` itself when the sizes agree or the block names none)."""
    from onnx import helper, numpy_helper

    if check_size is None or int(check_size) == model_size:
        return source
    graph.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), PREFIX + "nc_from"),
                              numpy_helper.from_array(np.array([2], np.int64), PREFIX + "nc_to"),
                              numpy_helper.from_array(np.array([int(check_size)] * 2, np.int64), PREFIX + "hw")])
    graph.node.extend([
        helper.make_node("Shape", [source], [PREFIX + "in_shape"]),
        helper.make_node("Slice", [PREFIX + "in_shape", PREFIX + "nc_from", PREFIX + "nc_to"], [PREFIX + "nc"]),
        helper.make_node("Concat", [PREFIX + "nc", PREFIX + "hw"], [PREFIX + "sizes"], axis=0),
        helper.make_node("Resize", [source, "", "", PREFIX + "sizes"], [PREFIX + "resized"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
    ])
    return PREFIX + "resized"


def attach(model_path: str | os.PathLike, check_onnx: str | os.PathLike, block: dict[str, Any],
           out_path: str | os.PathLike | None = None) -> Path:
    """Write `model_path` (or `out_path`) with the skin check's nodes and output added, and `block` as the
    metadata's `ood.skin_check`. A model that already has a check gets it replaced. Returns the written path."""
    import onnx
    from onnx import compose, helper

    validate_skin_check(block)
    model_path = Path(model_path)
    out = Path(out_path) if out_path is not None else model_path
    md = load_metadata(model_path)
    model = onnx.load(str(model_path))
    graph = model.graph
    # an earlier check: its nodes, initializers and output go first
    kept = [n for n in graph.node if not any(t.startswith(PREFIX) for t in n.output) and OUTPUT not in n.output]
    del graph.node[:]
    graph.node.extend(kept)
    inits = [t for t in graph.initializer if not t.name.startswith(PREFIX)]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    outs = [o for o in graph.output if o.name != OUTPUT]
    del graph.output[:]
    graph.output.extend(outs)

    check = compose.add_prefix(onnx.load(str(check_onnx)), PREFIX)
    (check_in,) = [i.name for i in check.graph.input]
    (check_out,) = [o.name for o in check.graph.output]
    source = _renormalise(graph, graph.input[0].name, list(md["input"]["mean"]), list(md["input"]["std"]))
    source = _resize_to(graph, source, int(md["input"]["size"]), block.get("input_size"))
    for node in check.graph.node:
        node.input[:] = [source if t == check_in else t for t in node.input]
        graph.node.append(node)
    graph.initializer.extend(check.graph.initializer)
    graph.node.append(helper.make_node("Reshape", [check_out, PREFIX + "shape"], [OUTPUT]))  # (N, 1) -> (N,)
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1], np.int64), PREFIX + "shape"))
    graph.output.append(helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, ["N"]))
    onnx.checker.check_model(model)
    staged = out.with_name(out.name + ".staged")
    onnx.save(model, str(staged))
    ood = {**(md.get("ood") or {}), "skin_check": block}
    write_metadata(out, {**md, "ood": ood}, source=staged)
    staged.unlink()
    return out
