"""Torch-free inference: everything `predict`, `serve` and the exported model's users need at run time.

- `preprocess`: THE preprocessing definition (PreprocessSpec; the browser's preprocess.js matches it
  bit for bit; each module here has its twin of the same name in app/static/js);
- `ood`: the not-skin check (skin-pixel floor, the fitted gate, the max-logit floor);
- `metadata`: the `hypoderm-onnx/1` metadata contract (read, build, validate, write; sidecar JSON);
- `verdict`: statuses, reasons, `result_from_logits` (the verdict rules; static/js/verdict.js mirrors it);
- `predictor`: OnnxPredictor (ONNX Runtime), `prepare`;
- `explain`: Grad-CAM maps from the model's `features` / `cam_weights` outputs.

Nothing here imports torch, `hypoderm.engine`, `hypoderm.models` or `hypoderm.checkpoint`
(tests/test_import_rules.py). The names below are the package's public interface.
"""

from hypoderm.inference.metadata import (
    DISCLAIMER,
    METADATA_FORMAT,
    METADATA_KEY,
    ModelLoadError,
    load_metadata,
    sidecar_path,
    validate_metadata,
)
from hypoderm.inference.predictor import (
    OnnxPredictor,
    bundled_model,
    decode_min_size_for,
    load_image,
    prepare,
    source_side,
)
from hypoderm.inference.verdict import MIN_SOURCE_SIDE, REASONS, STATUSES, result_from_logits, softmax

__all__ = [
    "DISCLAIMER", "METADATA_FORMAT", "METADATA_KEY", "MIN_SOURCE_SIDE", "REASONS", "STATUSES", "ModelLoadError",
    "OnnxPredictor", "bundled_model", "decode_min_size_for", "load_image", "load_metadata", "prepare",
    "result_from_logits", "sidecar_path", "softmax", "source_side", "validate_metadata",
]
