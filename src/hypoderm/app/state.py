"""What one running app holds (`ServerState`: the model, its metadata, the limits, the counters) and where its
files come from: the model (`resolve_model_path`), the page (`STATIC_DIR`) and onnxruntime-web (`find_web_assets`)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypoderm.app.assets import Delivery
from hypoderm.app.limits import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_LIMIT_CONCURRENCY,
    DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_MAX_DECODES,
    DEFAULT_MAX_UPLOADS,
    DEFAULT_MAX_UPLOADS_PER_CLIENT,
    DEFAULT_SLOW_UPLOAD_BYTES_PER_S,
    UploadProgress,
)
from hypoderm.app.web_runtime import ORT_FILES, PACKAGED
from hypoderm.inference import ModelLoadError, bundled_model

STATIC_DIR = Path(__file__).resolve().parent / "static"
# In a source checkout, `npm ci` puts onnxruntime-web here; a built wheel carries its own copy
# (hypoderm.app.web_runtime.PACKAGED); HYPODERM_WEB_ASSETS (or --web-assets) may name any folder holding
# `onnxruntime-web/dist`.
REPO_NODE_MODULES = Path(__file__).resolve().parents[3] / "node_modules"
WEB_ASSETS_ENV = "HYPODERM_WEB_ASSETS"

# Reason code (the page translates it): an ONNX file exported before the Grad-CAM outputs existed.
GRADCAM_MISSING = "no_gradcam_outputs"


def resolve_model_path(model: str | os.PathLike[str] | None) -> Path:
    """`--model` (a model.onnx, or a folder holding one) or the bundled model, checked to exist."""
    if model is None:
        bundled = bundled_model()
        if not bundled.is_file():
            raise ModelLoadError(
                f"no --model given and the bundled model is missing ({bundled}); "
                "pass --model PATH to a model.onnx (or its folder) made by `hypoderm export`")
        return bundled
    path = Path(model)
    if path.is_dir():
        path = path / "model.onnx"
    if not path.is_file():
        raise ModelLoadError(f"model not found: {path} "
                             "(expected a model.onnx made by `hypoderm export`, or its folder)")
    if path.suffix.lower() != ".onnx":
        raise ModelLoadError(f"{path} is not an .onnx file; export the checkpoint first with `hypoderm export`")
    return path


def find_web_assets(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding onnxruntime-web's `dist` files, or None when they are not installed."""
    candidates = [explicit, os.environ.get(WEB_ASSETS_ENV), REPO_NODE_MODULES, PACKAGED]
    for c in candidates:
        if not c:
            continue
        root = Path(c)
        for dist in (root / "onnxruntime-web" / "dist", root / "node_modules" / "onnxruntime-web" / "dist", root):
            if all((dist / f).is_file() for f in ORT_FILES):
                return dist
    return None


def ort_web_version(dist: Path | None) -> str | None:
    """onnxruntime-web's version, from the package.json beside its `dist` folder (None when unknown)."""
    if dist is None:
        return None
    try:
        return json.loads((dist.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class ServerState:
    """Everything one running app holds: the model, its metadata, the limits, counters."""

    model_path: Path
    predictor: Any
    metadata: dict[str, Any]
    web_assets: Path | None
    max_upload_bytes: int
    max_pixels: int
    max_decodes: int = DEFAULT_MAX_DECODES
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES
    max_uploads: int = DEFAULT_MAX_UPLOADS
    max_uploads_per_client: int = DEFAULT_MAX_UPLOADS_PER_CLIENT  # slow uploads still arriving, per address
    slow_upload_rate: float = DEFAULT_SLOW_UPLOAD_BYTES_PER_S  # bytes/s: slower uploads count against that cap
    in_flight: int = 0  # predictions whose upload has arrived: queued or decoding (event loop only)
    # uploads still arriving, by client address (event loop only)
    uploads: dict[str, list[UploadProgress]] = field(default_factory=dict)
    buffered_bytes: int = 0  # upload bytes held by requests in progress (event loop only)
    model_sha256: str = ""
    started: float = field(default_factory=time.time)
    predictions: int = 0
    client_errors: int = 0
    delivery: Delivery | None = None  # compressed, content-hashed delivery of the page, runtime and model
    decode_slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        # A threading semaphore, taken in the worker thread: the event loop never blocks on it, and it
        # works whichever event loop (uvicorn's, a TestClient's) runs the app.
        self.decode_slots = threading.BoundedSemaphore(self.max_decodes)

    def load(self) -> dict[str, Any]:
        """What /api/v1/health reports: each limit, its use, and which ones are reached (`saturated`)."""
        # /health runs in a worker thread while the event loop changes `uploads`: read a copy
        per_client = [list(v) for v in list(self.uploads.values())]
        uploading = sum(len(v) for v in per_client)
        now = time.monotonic()
        slow = [sum(u.is_slow(now, self.slow_upload_rate) for u in v) for v in per_client]
        use = {"predictions": (self.in_flight, self.limit_concurrency),
               "uploads": (uploading, self.max_uploads),
               "upload_bytes": (self.buffered_bytes, self.max_buffered_bytes)}
        return {**{name: {"in_progress": n, "limit": limit} for name, (n, limit) in use.items()},
                "slow_uploads": sum(slow),
                "clients_at_upload_limit": sum(n >= self.max_uploads_per_client for n in slow),
                "saturated": [name for name, (n, limit) in use.items() if n >= limit]}

    def gradcam_status(self) -> tuple[bool, str | None]:
        """(available, reason code): the heat map needs the exported model's Grad-CAM outputs."""
        if getattr(self.predictor, "has_gradcam", False):
            return True, None
        return False, GRADCAM_MISSING

    def get_delivery(self) -> Delivery:
        """The page, runtime and model delivery; a ServerState made by hand (tests) gets it on first use."""
        if self.delivery is None:
            self.delivery = Delivery.build(self.model_path, STATIC_DIR, self.web_assets, ORT_FILES)
        return self.delivery
