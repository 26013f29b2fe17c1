"""The predictor: an exported model on ONNX Runtime + numpy + Pillow, torch-free.

Used by `hypoderm predict` (given an ONNX file) and `hypoderm serve`; each photo's answer is
`hypoderm.inference.verdict.result_from_logits` (its format: docs/PREDICT_SCHEMA.md).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hypoderm.inference.metadata import ModelLoadError, load_metadata, session_config
from hypoderm.inference.ood import default_gate
from hypoderm.inference.preprocess import PreprocessSpec, normalize_uint8, square_uint8
from hypoderm.inference.verdict import result_from_logits, softmax


def load_image(path: str | os.PathLike, min_size: int | None = None) -> Image.Image:
    """Decode an image file to RGB with the project's robust loader (hypoderm.imaging.io).

    `min_size` (`hypoderm.inference.preprocess.decode_min_size(spec)`) lets a large JPEG decode at reduced DCT
    scale, straight to about the size the model needs (see hypoderm.imaging.io.load_rgb_bytes)."""
    from hypoderm.imaging.io import load_rgb

    return load_rgb(path, min_size=min_size)


def bundled_model() -> Path:
    """The model shipped in the package (src/hypoderm/assets/model.onnx); `predict` and `serve` default to it."""
    return Path(str(resources.files("hypoderm") / "assets" / "model.onnx"))


def source_side(img: Image.Image) -> int:
    """The shorter side of the photo as stored (a reduced-scale JPEG decode records it: hypoderm.imaging.io)."""
    from hypoderm.imaging.io import SOURCE_SIZE_KEY

    return int(min(img.info.get(SOURCE_SIZE_KEY, img.size)))


def prepare(img: Image.Image, spec: PreprocessSpec, framed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """PIL image -> (uint8 HWC square, CHW float32 model input) by the one rule (hypoderm.inference.preprocess:
    the centre square, seen whole); the uint8 square is also what the not-skin check scores
    (`hypoderm.inference.ood`). `framed` (the image is the square a person framed in the app) changes nothing
    since issue 29: a framed square and a whole photo go through the same rule; it is kept for callers."""
    crop = square_uint8(img, spec)
    return crop, normalize_uint8(crop, spec)


def decode_min_size_for(spec: PreprocessSpec) -> int:
    """The shorter side a reduced-scale JPEG decode must keep so that `prepare` sees what a full decode gives."""
    from hypoderm.inference.preprocess import decode_min_size

    return decode_min_size(spec)


class OnnxPredictor:
    """An exported hypoderm model on ONNX Runtime (CPU), with its metadata."""

    def __init__(self, onnx_path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        self.metadata: dict[str, Any] = load_metadata(self.path)
        default_gate()  # the shipped gate file: a damaged one is refused now (GateFileError), not at the first photo
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.spec = PreprocessSpec.from_dict(self.metadata["input"])
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        for key, value in session_config(self.metadata).items():  # INT8-stored weights: dequantised here
            opts.add_session_config_entry(key, value)
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelLoadError(f"ONNX Runtime cannot load {self.path}: {e}") from e
        self.input_name = self._graph_input()
        outputs = [o.name for o in self.session.get_outputs()]
        self.logits_name = (self.metadata.get("output") or {}).get("name") or outputs[0]
        if self.logits_name not in outputs:
            raise ModelLoadError(f"{self.path}: output.name {self.logits_name!r} in the metadata is not an output of "
                                 f"the ONNX graph (it has {', '.join(outputs)})")
        cam = self.metadata.get("gradcam") or {}
        self.cam_names = ((cam.get("features", "features"), cam.get("cam_weights", "cam_weights"))
                          if {cam.get("features", "features"), cam.get("cam_weights", "cam_weights")} <= set(outputs)
                          else None)
        self.skin_name = ((self.metadata.get("ood") or {}).get("skin_check") or {}).get("output")
        if self.skin_name is not None and self.skin_name not in outputs:
            raise ModelLoadError(f"{self.path}: ood.skin_check.output {self.skin_name!r} in the metadata is not an "
                                 f"output of the ONNX graph (it has {', '.join(outputs)})")
        self._check_outputs()

    def _graph_input(self) -> str:
        """The graph's one image input, checked against the metadata's `input` block: float, (N, 3, size, size)."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"{self.path}: the ONNX graph has {len(inputs)} inputs; a hypoderm model has one, the "
                                 "image")
        graph, named = inputs[0], (self.metadata["input"] or {}).get("name")
        if named is not None and named != graph.name:
            raise ModelLoadError(f"{self.path}: input.name {named!r} in the metadata is not the ONNX graph's input "
                                 f"({graph.name!r})")
        if graph.type != "tensor(float)":
            raise ModelLoadError(f"{self.path}: the ONNX graph's input is {graph.type}, not tensor(float)")
        want = [3, self.spec.size, self.spec.size]
        dims = list(graph.shape)[1:]
        if len(graph.shape) != 4 or any(isinstance(d, int) and d != w for d, w in zip(dims, want, strict=True)):
            raise ModelLoadError(f"{self.path}: input.size {self.spec.size} in the metadata does not match the ONNX "
                                 f"graph's input shape {list(graph.shape)} (expected [N, 3, {self.spec.size}, "
                                 f"{self.spec.size}])")
        return graph.name

    def _check_outputs(self) -> None:
        """One run on a blank image: the logits must be (1, K) for the metadata's K classes and finite, and the
        Grad-CAM outputs, when present, (1, C, h, w) and (1, K, C). Refuses at load what would otherwise make
        every prediction fail (or answer for a class that is not there)."""
        k = len(self.class_names)
        names = [self.logits_name, *(self.cam_names or ())]
        x = np.zeros((1, 3, self.spec.size, self.spec.size), np.float32)
        try:
            (logits, *cam), score = self._run(x[0], names)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelLoadError(f"{self.path}: the model does not run on a {self.spec.size} px input ({e})") from e
        if logits.shape != (1, k):
            raise ModelLoadError(f"{self.path}: class_names lists {k} classes but the model's {self.logits_name!r} "
                                 f"output has shape {list(logits.shape)} (expected [N, {k}])")
        if not np.all(np.isfinite(logits)):
            raise ModelLoadError(f"{self.path}: the model's outputs are not finite (NaN or infinity) on a blank "
                                 "image; the ONNX file is broken")
        if self.skin_name and (score is None or not np.isfinite(score)):
            raise ModelLoadError(f"{self.path}: the skin check's output {self.skin_name!r} must be one finite number "
                                 "per image; re-export the model")
        if cam and not (cam[0].ndim == 4 and cam[1].shape == (1, k, cam[0].shape[1])):
            raise ModelLoadError(f"{self.path}: the Grad-CAM outputs have shapes {list(cam[0].shape)} and "
                                 f"{list(cam[1].shape)} (expected [N, C, h, w] and [N, {k}, C]); re-export the model")

    @property
    def has_gradcam(self) -> bool:
        """True when the ONNX model returns the Grad-CAM outputs (exports before them do not)."""
        return self.cam_names is not None

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 batch -> logits (N, C)."""
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        return self.session.run([self.logits_name], feed)[0]

    def _run(self, x: np.ndarray, names: list[str]) -> tuple[list[np.ndarray], float | None]:
        """One session run of one image (CHW) for `names`, plus the skin check's score when the model has one
        (None also when its output is not one number: `_check_outputs` refuses such a model at load)."""
        outs = self.session.run([*names, *([self.skin_name] if self.skin_name else [])], {self.input_name: x[None]})
        score = np.ravel(outs[-1]) if self.skin_name else None
        return outs[:len(names)], (float(score[0]) if score is not None and score.size == 1 else None)

    def _cam_outputs(self) -> tuple[str, str]:
        """The Grad-CAM output names; ModelLoadError when the model has none."""
        if self.cam_names is None:
            raise ModelLoadError(f"{self.path.name} has no Grad-CAM outputs (exported before they existed); "
                                 "re-export it with `hypoderm export`")
        return self.cam_names

    def gradcam_outputs(self, img: Image.Image, framed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(features (C, h, w), cam_weights (K, C)) of one photo; ModelLoadError without the outputs."""
        cam_names = self._cam_outputs()
        _, x = prepare(img, self.spec, framed)
        features, weights = self.session.run(list(cam_names), {self.input_name: x[None]})
        return features[0], weights[0]

    def gradcam_overlay(self, img: Image.Image, class_index: int, framed: bool = False) -> Image.Image:
        """The photo (scaled to at most explain.OVERLAY_MAX_SIDE px) with the Grad-CAM map of `class_index`."""
        from hypoderm.inference.explain import overlay_on_photo

        features, weights = self.gradcam_outputs(img, framed)
        return overlay_on_photo(img, features, weights, class_index, self.spec, framed=framed)

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 batch -> calibrated probabilities (N, C)."""
        return softmax(self.predict_logits(x), float(self.metadata["temperature"]))

    def predict_image(self, img: Image.Image, top_k: int = 3, framed: bool = False) -> dict[str, Any]:
        """PIL image -> the per-image result dict (`framed`: see `prepare`)."""
        crop, x = prepare(img, self.spec, framed)
        (logits,), skin = self._run(x, [self.logits_name])
        return result_from_logits(logits[0], crop, self.metadata, top_k, source_side=source_side(img), skin_score=skin)

    def predict_with_cam(self, img: Image.Image, top_k: int = 3,
                         framed: bool = False) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
        """(result dict, (features (C, h, w), cam_weights (K, C))) from one preprocessing and one session run.
        ModelLoadError when the model has no Grad-CAM outputs."""
        cam_names = self._cam_outputs()
        crop, x = prepare(img, self.spec, framed)
        (logits, features, weights), skin = self._run(x, [self.logits_name, *cam_names])
        result = result_from_logits(logits[0], crop, self.metadata, top_k, source_side=source_side(img),
                                    skin_score=skin)
        return result, (features[0], weights[0])

    def predict_with_overlay(self, img: Image.Image, top_k: int = 3,
                             framed: bool = False) -> tuple[dict[str, Any], Image.Image | None]:
        """(result dict, Grad-CAM overlay of the answer or None) from one preprocessing and one
        session run; the overlay is drawn only next to an answer (status ok), as `predict --cam` and the page
        show it: a refused photo has no class to explain, and a map of a withheld answer's hidden top class would
        say more than the answer does. ModelLoadError when the model has no Grad-CAM outputs."""
        from hypoderm.inference.explain import overlay_on_photo

        result, (features, weights) = self.predict_with_cam(img, top_k, framed)
        if result["status"] != "ok":
            return result, None
        index = self.class_names.index(result["top_k"][0]["label"])
        return result, overlay_on_photo(img, features, weights, index, self.spec, framed=framed)
