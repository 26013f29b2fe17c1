"""A `.pt` training checkpoint as a predictor for `hypoderm predict --model best.pt` (PyTorch; the command reaches
it lazily, so an `.onnx` model never imports torch): the same result dict and Grad-CAM definition as
hypoderm.inference.OnnxPredictor (the exported graph's extra outputs, computed by the same module in PyTorch)."""

from __future__ import annotations

import os
from typing import Any

from PIL import Image

from hypoderm.inference import ModelLoadError, prepare, result_from_logits, source_side
from hypoderm.inference.preprocess import preprocess


class TorchPredictor:
    """A `.pt` checkpoint on PyTorch, same result schema and Grad-CAM definition as OnnxPredictor."""

    has_gradcam = True

    def __init__(self, checkpoint: str | os.PathLike) -> None:
        import torch

        from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
        from hypoderm.export.gradcam import GradCamGraph, UnsupportedModelError
        from hypoderm.inference.metadata import metadata_from_checkpoint, validate_metadata
        from hypoderm.inference.ood import DEFAULT_OOD
        from hypoderm.inference.preprocess import PreprocessSpec
        from hypoderm.model_quality import checkpoint_problems

        self._torch = torch
        ckpt = load_checkpoint(checkpoint)
        self.model = model_from_checkpoint(ckpt)
        self.metadata = metadata_from_checkpoint(ckpt)
        self.metadata["ood"] = self.metadata.get("ood") or dict(DEFAULT_OOD)
        validate_metadata(self.metadata, source=str(checkpoint))  # e.g. a one-class model is refused here too
        # a checkpoint carries no export mark: check it as `export` would, so a broken one is said
        self.metadata["quality"] = {"problems": checkpoint_problems(ckpt)}
        self.spec = PreprocessSpec.from_dict(ckpt["preprocess"])
        try:
            self.cam_graph: Any = GradCamGraph(self.model).eval()
        except UnsupportedModelError:
            self.cam_graph, self.has_gradcam = None, False

    def predict_image(self, img: Image.Image, top_k: int = 3) -> dict[str, Any]:
        crop, x = prepare(img, self.spec)
        with self._torch.inference_mode():
            logits = self.model(self._torch.from_numpy(x[None]))[0].double().numpy()
        return result_from_logits(logits, crop, self.metadata, top_k, source_side=source_side(img))

    def predict_with_cam(self, img: Image.Image, top_k: int = 3) -> tuple[dict[str, Any], tuple[Any, Any]]:
        """(result dict, (features (C, h, w), cam_weights (K, C))): the model's answer and the Grad-CAM graph's
        outputs (a second forward pass, through the wrapped model)."""
        if self.cam_graph is None:
            raise ModelLoadError("this model's structure has no Grad-CAM outputs")
        result = self.predict_image(img, top_k)
        x = preprocess(img, self.spec)
        with self._torch.inference_mode():
            _, features, weights = self.cam_graph(self._torch.from_numpy(x[None]))
        return result, (features[0].double().numpy(), weights[0].double().numpy())
