"""What one running app holds (`ServerState`: the model, its metadata, the limits, the counters) and where its
files come from: the page (`STATIC_DIR`) and onnxruntime-web (`find_web_assets`)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypoderm.app.assets import Delivery
from hypoderm.app.limits import Limits, UploadProgress
from hypoderm.app.web_runtime import ORT_FILES, PACKAGED

STATIC_DIR = Path(__file__).resolve().parent / "static"
# In a source checkout, `npm ci` puts onnxruntime-web here; a built wheel carries its own copy
# (hypoderm.app.web_runtime.PACKAGED); HYPODERM_WEB_ASSETS (or --web-assets) may name any folder holding
# `onnxruntime-web/dist`.
REPO_NODE_MODULES = Path(__file__).resolve().parents[3] / "node_modules"
WEB_ASSETS_ENV = "HYPODERM_WEB_ASSETS"

# Reason code (the page translates it): an ONNX file exported before the Grad-CAM outputs existed.
GRADCAM_MISSING = "no_gradcam_outputs"


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
    limits: Limits = field(default_factory=Limits)
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
        self.decode_slots = threading.BoundedSemaphore(self.limits.max_decodes)

    def load(self) -> dict[str, Any]:
        """What /api/v1/health reports: each limit, its use, and which ones are reached (`saturated`)."""
        # /health runs in a worker thread while the event loop changes `uploads`: read a copy
        per_client = [list(v) for v in list(self.uploads.values())]
        uploading = sum(len(v) for v in per_client)
        now = time.monotonic()
        limits = self.limits
        slow = [sum(u.is_slow(now, limits.slow_upload_rate) for u in v) for v in per_client]
        use = {"predictions": (self.in_flight, limits.limit_concurrency),
               "uploads": (uploading, limits.max_uploads),
               "upload_bytes": (self.buffered_bytes, limits.max_buffered_bytes)}
        return {**{name: {"in_progress": n, "limit": limit} for name, (n, limit) in use.items()},
                "slow_uploads": sum(slow),
                "clients_at_upload_limit": sum(n >= limits.max_uploads_per_client for n in slow),
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
