"""Helpers for the export / predict / OOD tests: skin-like and non-skin pictures drawn in numpy /
Pillow, and a tiny checkpoint trained for a few steps (torch imported only inside the trainer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("normal_skin", "vitiligo")
SKIN_TONES = ((236, 188, 160), (215, 160, 125), (190, 130, 95), (150, 100, 70), (110, 72, 52))


def skin_image(label: int, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """Skin-toned picture with smooth texture; label 1 adds large pale (depigmented) patches."""
    tone = np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))], np.float32)
    coarse = rng.uniform(-12, 12, size=(6, 6)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))
    arr = tone[None, None] * (1 + texture[..., None] / 100) + rng.normal(0, 3, (size, size, 3))
    if label == 1:
        yy, xx = np.mgrid[0:size, 0:size]
        for _ in range(2):
            cy, cx = rng.uniform(0.2, 0.8, 2) * size
            patch = (yy - cy) ** 2 + (xx - cx) ** 2 < (rng.uniform(0.15, 0.25) * size) ** 2
            arr[patch] = arr[patch] * 0.35 + np.float32(240) * 0.65
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def non_skin_pictures(size: int = 96, seed: int = 0) -> dict[str, Image.Image]:
    """Drawn pictures that are not skin: geometric drawings, text on white, grass, sky, grey."""
    rng = np.random.default_rng(seed)
    out: dict[str, Image.Image] = {}
    img = Image.new("RGB", (size, size), (30, 60, 200))
    d = ImageDraw.Draw(img)
    d.rectangle([10, 10, size // 2, size // 2], fill=(20, 180, 60))
    d.ellipse([size // 3, size // 3, size - 5, size - 5], fill=(250, 250, 40))
    out["blue_green_shapes"] = img
    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for i in range(8):
        d.text((4, 4 + i * 11), "lorem ipsum dolor", fill=(0, 0, 0))
    out["text_on_white"] = img
    base = np.zeros((size, size, 3), np.float32)
    base[..., 1] = rng.uniform(90, 190, (size, size))
    base[..., 0] = base[..., 1] * rng.uniform(0.3, 0.6, (size, size))
    base[..., 2] = base[..., 1] * rng.uniform(0.1, 0.3, (size, size))
    out["grass"] = Image.fromarray(base.astype(np.uint8), "RGB")
    yy = np.linspace(0, 1, size)[:, None, None]
    out["sky"] = Image.fromarray(np.broadcast_to((90 + 100 * yy) * np.array([0.6, 0.8, 1.0]) + 40,
                                                 (size, size, 3)).astype(np.uint8), "RGB")
    out["grey_noise"] = Image.fromarray(np.repeat(rng.integers(0, 256, (size, size, 1)), 3, 2).astype(np.uint8), "RGB")
    return out


def train_tiny_checkpoint(path: Path, size: int = 32, steps: int = 15, model_name: str = "mnv3s",
                          seed: int = 0, recalibrate_bn: bool = False, **overrides: object) -> Path:
    """A hypoderm checkpoint (per hypoderm.checkpoint's contract) of `model_name`, trained for a
    few SGD steps on synthetic skin images. `overrides` replace checkpoint keys.

    Trained on one torch thread whatever the caller's setting: the float sums of a convolution's gradient
    depend on the thread count, and 15 Adam steps carry that difference into weights that quantise differently
    (the INT8 agreement test failed or passed with the thread count before). `recalibrate_bn`: the BatchNorm
    statistics are recomputed with the trained weights at the end (without it they average 15 batches seen
    while the weights moved, and eval-mode activations, logits up to +-100, stray far outside what an INT8
    calibration set covers)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_tiny_checkpoint(path, size, steps, model_name, seed, recalibrate_bn, **overrides)
    finally:
        torch.set_num_threads(threads)


def _train_tiny_checkpoint(path: Path, size: int, steps: int, model_name: str, seed: int, recalibrate_bn: bool,
                           **overrides: object) -> Path:
    import torch

    from hypoderm.checkpoint import FORMAT, save_atomic
    from hypoderm.inference.preprocess import PreprocessSpec, preprocess
    from hypoderm.models import create_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = PreprocessSpec.for_size(size)
    labels = np.arange(64) % 2
    x = torch.from_numpy(np.stack([preprocess(skin_image(int(k), rng, size + 8), spec) for k in labels]))
    y = torch.from_numpy(labels).long()
    model = create_model(model_name, num_classes=len(CLASSES))
    for m in model.modules():  # cumulative BatchNorm statistics: usable in eval mode after few steps
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(x), 16, replace=False))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    if recalibrate_bn:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
            model(x)  # train mode, momentum None: the statistics of all 64 images under the final weights
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    ckpt = {"format": FORMAT, "model_name": model_name, "num_classes": len(CLASSES), "model_kwargs": {},
            "state_dict": model.state_dict(), "class_names": list(CLASSES), "preprocess": spec.to_dict(),
            "temperature": 1.0, "abstain_threshold": 0.6, "ood": None, "config": {"steps": steps},
            "split": None, "epoch": 1, "metrics": {"train/accuracy": acc},
            "data_summary": {"summary": "synthetic skin images (test)", "counts": {"normal_skin": 32, "vitiligo": 32}}}
    ckpt.update(overrides)
    return save_atomic(ckpt, path)


_CACHE: dict[tuple, Path] = {}


def tiny_checkpoint(tmp_dir: Path, **kwargs: Any) -> Path:
    """train_tiny_checkpoint, trained once per test session for the same arguments."""
    key = tuple(sorted(kwargs.items()))
    if key not in _CACHE or not _CACHE[key].is_file():
        _CACHE[key] = train_tiny_checkpoint(Path(tmp_dir) / f"tiny_{len(_CACHE)}.pt", **kwargs)
    return _CACHE[key]


def export_checkpoint(ckpt_path: Path, out: Path, ood: dict | None = None) -> Path:
    """`out` (model.onnx + sidecar) exported from the checkpoint; `ood` replaces its OOD block."""
    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.export import export_onnx
    from hypoderm.inference.metadata import metadata_from_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    md = metadata_from_checkpoint(ckpt)
    if ood is not None:
        md["ood"] = ood
    return export_onnx(model_from_checkpoint(ckpt), md, out)


# the stand-in learned skin check: 4 * (mean R - mean B) of the ImageNet-normalised input, + 0.5
TINY_CHECK_WEIGHTS = (4.0, 0.0, -4.0)
TINY_CHECK_BIAS = 0.5


def tiny_skin_check(path: Path) -> Path:
    """An ONNX skin check small enough to score by hand: input (N, 3, H, W) -> GlobalAveragePool -> Gemm -> (N, 1)
    (the shipped check's output shape), i.e. `TINY_CHECK_WEIGHTS` . mean colour + `TINY_CHECK_BIAS`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w", "b"], ["skin_score"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny_check", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("skin_score", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.asarray(TINY_CHECK_WEIGHTS, np.float32).reshape(1, 3), "w"),
         numpy_helper.from_array(np.array([TINY_CHECK_BIAS], np.float32), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path
