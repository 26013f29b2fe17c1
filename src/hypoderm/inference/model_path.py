"""Which model file `predict` and `serve` run: `--model` (a model file, or a folder holding the model.onnx that
`hypoderm export` wrote) or, when none is given, the bundled model. One check and one wording for each way the
choice can be wrong (ModelLoadError, a user error): the bundled model missing, no such file, a folder without
model.onnx, a file of another kind."""

from __future__ import annotations

import os
from pathlib import Path

from hypoderm.inference.metadata import ModelLoadError
from hypoderm.inference.predictor import bundled_model

ONNX = (".onnx",)
CHECKPOINT = (".pt", ".pth")  # `predict` also runs a training checkpoint (through torch)
MODEL_FILE = "model.onnx"  # what `hypoderm export` writes, and what a folder given as --model must hold


def expected(suffixes: tuple[str, ...] = ONNX) -> str:
    """What `--model` should name, for the messages."""
    onnx = f"a {MODEL_FILE} made by `hypoderm export` (or its folder)"
    return onnx + (", or a .pt checkpoint" if any(s in CHECKPOINT for s in suffixes) else "")


def resolve_model_path(model: str | os.PathLike[str] | None, suffixes: tuple[str, ...] = ONNX) -> Path:
    """The model file to load: `model` itself, `model`/model.onnx when it is a folder, or the bundled model when
    it is None; checked to exist and to end with one of `suffixes` (ModelLoadError otherwise)."""
    if model is None:
        bundled = bundled_model()
        if not bundled.is_file():
            raise ModelLoadError(f"no --model given and the bundled model is missing ({bundled}); "
                                 f"pass --model PATH to {expected(suffixes)}")
        return bundled
    path = Path(model)
    if path.is_dir():
        inside = path / MODEL_FILE
        if not inside.is_file():
            raise ModelLoadError(f"model not found: {inside} (the folder {path} holds no {MODEL_FILE}; "
                                 f"expected {expected(suffixes)})")
        return inside
    if not path.is_file():
        raise ModelLoadError(f"model not found: {path} (expected {expected(suffixes)})")
    if path.suffix.lower() not in suffixes:
        kinds = " or ".join([", ".join(suffixes[:-1]), suffixes[-1]] if len(suffixes) > 1 else suffixes)
        hint = "" if any(s in CHECKPOINT for s in suffixes) else \
            "; a .pt checkpoint must be exported first with `hypoderm export`"
        raise ModelLoadError(f"{path} is not a {kinds} file (expected {expected(suffixes)}){hint}")
    return path
