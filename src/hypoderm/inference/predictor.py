"""The predictor: an exported model on ONNX Runtime + numpy + Pillow, torch-free.

Used by `hypoderm predict` (given an ONNX file) and `hypoderm serve`. The per-image result is the
`predict --json` schema (docs/PREDICT_SCHEMA.md):

    {"status": "ok" | "uncertain" | "not_skin",
     "answer": str | None,            # the class given as the answer: only when status is "ok"
     "top_k": [{"label": str, "probability": float}, ...],   # empty when status is "not_skin"
     "probabilities": {label: float},
     "ood": {"skin_fraction": float, "max_logit": float, "is_skin": bool},
     "message": str}
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hypoderm.cards import display_name, format_probability
from hypoderm.inference.metadata import DISCLAIMER, ModelLoadError, load_metadata, session_config
from hypoderm.inference.ood import ood_check, with_gate
from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array, normalize_uint8, preprocess, resized_uint8

REFER_MESSAGE = "Uncertain: the model cannot decide; please see a dermatologist"
RETAKE_MESSAGE = "To retake the photo: closer, in daylight, with the lesion centred."


def load_image(path: str | os.PathLike, min_size: int | None = None) -> Image.Image:
    """Decode an image file to RGB with the project's robust loader (hypoderm.data.io).

    `min_size` (`hypoderm.inference.preprocess.decode_min_size(spec)`) lets a large JPEG decode at reduced DCT
    scale, straight to about the size the model needs (see hypoderm.data.io.load_rgb_bytes)."""
    from hypoderm.data.io import load_rgb

    return load_rgb(path, min_size=min_size)


def bundled_model() -> Path:
    """The model shipped in the package (src/hypoderm/assets/model.onnx); `predict` and `serve` default to it."""
    return Path(str(resources.files("hypoderm") / "assets" / "model.onnx"))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax(logits / temperature), numerically stable, float64."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def prepare(img: Image.Image, spec: PreprocessSpec, ood: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PIL image -> (uint8 HWC crop used by the OOD check, CHW float32 model input).

    The same steps as `hypoderm.inference.preprocess.preprocess`, split so the crop is computed once. The
    not-skin gate (`ood["gate"]`, default `hypoderm.inference.ood.DEFAULT_GATE`) is defined on its own centre
    crop of the photo at `gate.size` (resize the shorter side to round(size / 0.875), as a model of that
    size would see it): for a model of another input size that crop is made from the photo, not by
    resizing the model's crop, so the gate sees what it was fitted on (a 128 px crop blown up to 224
    let 9% of the held-out non-skin pictures through)."""
    crop = center_crop_array(resized_uint8(img, spec), spec.size)
    return ood_crop(img, spec, crop, ood), normalize_uint8(crop, spec)


def decode_min_size_for(spec: PreprocessSpec, ood: dict[str, Any] | None) -> int:
    """The shorter side a reduced-scale JPEG decode must keep for the model's crop and for the not-skin
    gate's own crop (`prepare`), so that both see what a full decode would give them."""
    from hypoderm.inference.preprocess import decode_min_size

    gate = with_gate(ood)["gate"]
    gate_size = decode_min_size(PreprocessSpec.for_size(int(gate["size"]))) if gate is not None else 0
    return max(decode_min_size(spec), gate_size)


def ood_crop(img: Image.Image, spec: PreprocessSpec, crop: np.ndarray, ood: dict[str, Any] | None) -> np.ndarray:
    """The crop the OOD check scores: the model's `crop`, or the gate's own crop when its size differs."""
    gate = with_gate(ood)["gate"]
    if gate is None or int(gate["size"]) == spec.size:
        return crop
    gate_spec = PreprocessSpec.for_size(int(gate["size"]))
    return center_crop_array(resized_uint8(img, gate_spec), gate_spec.size)


def result_from_logits(logits: np.ndarray, crop: np.ndarray, metadata: dict[str, Any],
                       top_k: int = 3) -> dict[str, Any]:
    """One image's logits (C,) + its uint8 crop -> the per-image result dict (verdict rules of
    docs/ARCHITECTURE.md: not_skin, else uncertain below the abstain threshold, else ok).

    Only an `ok` verdict names a class as the answer (`answer`); a rejected photo (`not_skin`) has an
    empty `top_k`, and an uncertain one lists its candidates as equals in the message. The raw
    probabilities stay in `probabilities` for research use; the message rounds honestly."""
    names = list(metadata["class_names"])
    logits = np.asarray(logits, dtype=np.float64).ravel()
    if logits.size != len(names):
        raise ModelLoadError(f"model gives {logits.size} outputs but metadata names {len(names)} classes")
    probs = softmax(logits, float(metadata["temperature"]))
    order = np.argsort(-probs, kind="stable")[: max(1, min(int(top_k), len(names)))]
    top = [{"label": names[i], "probability": float(probs[i])} for i in order]
    ood = ood_check(crop, logits, metadata.get("ood"))
    threshold = float(metadata["abstain_threshold"])
    answer = None
    if not ood["is_skin"]:
        status, top = "not_skin", []
        message = ("Not analysed: this does not look like a photo of skin "
                   f"(skin-coloured pixels {ood['skin_fraction']:.0%}). Take a close, well-lit photo of the skin area.")
    elif top[0]["probability"] < threshold:
        status = "uncertain"
        candidates = ", ".join(sorted(display_name(t["label"]) for t in top))
        message = f"{REFER_MESSAGE}. {RETAKE_MESSAGE} Candidates, equally possible: {candidates}."
    else:
        status, answer = "ok", top[0]["label"]
        message = f"{display_name(answer)} ({format_probability(top[0]['probability'])}). {DISCLAIMER}"
    return {"status": status, "answer": answer, "top_k": top,
            "probabilities": {n: float(p) for n, p in zip(names, probs, strict=True)},
            "ood": ood, "message": message}


class OnnxPredictor:
    """An exported hypoderm model on ONNX Runtime (CPU), with its metadata."""

    def __init__(self, onnx_path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        self.metadata: dict[str, Any] = load_metadata(self.path)
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
            logits, *cam = self.session.run(names, {self.input_name: x})
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelLoadError(f"{self.path}: the model does not run on a {self.spec.size} px input ({e})") from e
        if logits.shape != (1, k):
            raise ModelLoadError(f"{self.path}: class_names lists {k} classes but the model's {self.logits_name!r} "
                                 f"output has shape {list(logits.shape)} (expected [N, {k}])")
        if not np.all(np.isfinite(logits)):
            raise ModelLoadError(f"{self.path}: the model's outputs are not finite (NaN or infinity) on a blank "
                                 "image; the ONNX file is broken")
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

    def _cam_outputs(self) -> tuple[str, str]:
        """The Grad-CAM output names; ModelLoadError when the model has none."""
        if self.cam_names is None:
            raise ModelLoadError(f"{self.path.name} has no Grad-CAM outputs (exported before they existed); "
                                 "re-export it with `hypoderm export`")
        return self.cam_names

    def gradcam_outputs(self, img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """(features (C, h, w), cam_weights (K, C)) of one photo; ModelLoadError without the outputs."""
        cam_names = self._cam_outputs()
        x = preprocess(img, self.spec)
        features, weights = self.session.run(list(cam_names), {self.input_name: x[None]})
        return features[0], weights[0]

    def gradcam_overlay(self, img: Image.Image, class_index: int) -> Image.Image:
        """The photo (scaled to at most explain.OVERLAY_MAX_SIDE px) with the Grad-CAM map of `class_index`."""
        from hypoderm.inference.explain import overlay_on_photo

        features, weights = self.gradcam_outputs(img)
        return overlay_on_photo(img, features, weights, class_index, self.spec)

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 batch -> calibrated probabilities (N, C)."""
        return softmax(self.predict_logits(x), float(self.metadata["temperature"]))

    def predict_image(self, img: Image.Image, top_k: int = 3) -> dict[str, Any]:
        """PIL image -> the per-image result dict."""
        crop, x = prepare(img, self.spec, self.metadata.get("ood"))
        logits = self.predict_logits(x[None])[0]
        return result_from_logits(logits, crop, self.metadata, top_k)

    def predict_with_overlay(self, img: Image.Image, top_k: int = 3) -> tuple[dict[str, Any], Image.Image | None]:
        """(result dict, Grad-CAM overlay of the top class or None) from one preprocessing and one
        session run; the overlay is None when the photo is rejected (not_skin: no class to explain).
        ModelLoadError when the model has no Grad-CAM outputs."""
        cam_names = self._cam_outputs()
        from hypoderm.inference.explain import overlay_on_photo

        crop, x = prepare(img, self.spec, self.metadata.get("ood"))
        logits, features, weights = self.session.run([self.logits_name, *cam_names], {self.input_name: x[None]})
        result = result_from_logits(logits[0], crop, self.metadata, top_k)
        if not result["top_k"]:
            return result, None
        index = self.class_names.index(result["top_k"][0]["label"])
        return result, overlay_on_photo(img, features[0], weights[0], index, self.spec)
