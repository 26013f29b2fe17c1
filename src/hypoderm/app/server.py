"""`hypoderm serve`: the mobile diagnosis web app and its JSON API (FastAPI + uvicorn); `create_app` builds
the app for one model, `serve` runs it. (The command's options: hypoderm.commands.serve.)

The page runs the model in the browser (onnxruntime-web, WASM); the server also predicts, as a fallback or by
choice. Grad-CAM comes from the exported model's own outputs (features and cam_weights,
hypoderm.inference.explain), in numpy here and in JavaScript in the page; the server never imports torch.

The app, one module per job:

    state.py   ServerState (model, metadata, limits, counters); where the model, the page and the runtime are
    api.py     /api/v1: health, model, predict (APIRouter; the answers' Pydantic models for /docs)
    pages.py   the page, its static files, runtime, model and service worker; the API docs
    limits.py  upload limits (bytes, time, uploads per client and in total, bytes held), the uvicorn options
    errors.py  security headers; every error as JSON (ApiError)
    upload.py  in-memory multipart parsing (no uploaded image is ever written to disk)
    assets.py  compressed, content-hashed delivery;   guard.py  header deadline and size, connection cap

Hardening: uploads are capped in bytes (before they are parsed), in pixels and aspect ratio (before they are
decoded), and in time (header and body read deadlines); at most `max_decodes` photos are decoded at once, so
decode memory is bounded by that times the worst image, not by the number of clients; every photo decodes
straight to a working size of about what the model needs (hypoderm.imaging.io), and the Grad-CAM picture is at
most 512 px. The format is sniffed from the bytes, never from the file name or the declared type; every error is
a JSON 4xx with a specific message (and a 500, should one ever happen, is JSON with the security headers too);
the Content-Security-Policy allows our own origin only, so the page makes no third-party request.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from hypoderm import __version__
from hypoderm.app import api, pages
from hypoderm.app.assets import Delivery, sha256_file
from hypoderm.app.errors import CSP, SECURITY_HEADERS, ApiError, add_error_handling
from hypoderm.app.limits import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_LIMIT_CONCURRENCY,
    DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_MAX_DECODES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_MAX_UPLOADS,
    DEFAULT_MAX_UPLOADS_PER_CLIENT,
    DEFAULT_SLOW_UPLOAD_BYTES_PER_S,
    fit_open_file_limit,
    log,
    uvicorn_options,
)
from hypoderm.app.state import (
    REPO_NODE_MODULES,
    STATIC_DIR,
    WEB_ASSETS_ENV,
    ServerState,
    find_web_assets,
    resolve_model_path,
)
from hypoderm.app.web_runtime import ORT_FILES
from hypoderm.inference import ModelLoadError

__all__ = ["CSP", "ORT_FILES", "REPO_NODE_MODULES", "SECURITY_HEADERS", "STATIC_DIR", "WEB_ASSETS_ENV", "ApiError",
           "ModelLoadError", "ServerState", "create_app", "find_web_assets", "serve"]


def _load_predictor(model_path: Path, threads: int | None) -> Any:
    from hypoderm.inference import OnnxPredictor

    return OnnxPredictor(model_path, threads=threads)


def create_app(model: str | os.PathLike[str] | None = None, *, web_assets: str | os.PathLike[str] | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               threads: int | None = None, max_decodes: int = DEFAULT_MAX_DECODES,
               body_timeout: float = DEFAULT_BODY_TIMEOUT_S, limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY,
               max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES, cache_dir: Path | None = None,
               max_uploads: int = DEFAULT_MAX_UPLOADS, max_uploads_per_client: int = DEFAULT_MAX_UPLOADS_PER_CLIENT,
               slow_upload_rate: float = DEFAULT_SLOW_UPLOAD_BYTES_PER_S) -> FastAPI:
    """The app for one model. Raises ModelLoadError when the model cannot be used. `cache_dir` holds the
    precompressed runtime and model (default: hypoderm.app.assets.default_cache_dir()). `max_uploads_per_client`
    caps the uploads of one address that arrive slower than `slow_upload_rate` bytes/s."""
    if min(max_decodes, limit_concurrency, max_uploads, max_uploads_per_client) < 1 or body_timeout <= 0 \
            or max_buffered_bytes < max_upload_bytes or not slow_upload_rate >= 0:
        raise ValueError("max_decodes, limit_concurrency, max_uploads and max_uploads_per_client must be >= 1, "
                         "body_timeout > 0, slow_upload_rate >= 0 and max_buffered_bytes >= max_upload_bytes")
    model_path = resolve_model_path(model)
    try:
        predictor = _load_predictor(model_path, threads)
    except Exception as e:  # noqa: BLE001 - report any loader failure as a model problem, without a traceback
        raise ModelLoadError(f"cannot load model {model_path}: {e}") from e
    metadata = dict(predictor.metadata)
    state = ServerState(model_path=model_path, predictor=predictor, metadata=metadata,
                        web_assets=find_web_assets(web_assets), max_upload_bytes=max_upload_bytes,
                        max_pixels=max_pixels, max_decodes=max_decodes, body_timeout=body_timeout,
                        limit_concurrency=limit_concurrency, max_buffered_bytes=max_buffered_bytes,
                        max_uploads=max_uploads, max_uploads_per_client=max_uploads_per_client,
                        slow_upload_rate=float(slow_upload_rate),
                        model_sha256=sha256_file(model_path))
    state.delivery = Delivery.build(model_path, STATIC_DIR, state.web_assets, ORT_FILES, cache_dir)

    app = FastAPI(title="hypoderm", version=__version__, docs_url=None, redoc_url=None,
                  description="Diagnosis aid for hypopigmented skin diseases. A decision aid, not a diagnosis.")
    app.state.hypoderm = state
    add_error_handling(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    return app


def serve(app: FastAPI, host: str, port: int, limits: Any) -> None:
    """Run `app` with uvicorn until it is stopped. `limits`: the `hypoderm serve` options header_timeout,
    keep_alive_timeout, max_connections (lowered to fit the open-file limit) and forwarded_allow_ips."""
    import uvicorn

    if not log.handlers:  # one plain line per rejected client on stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    limits.max_connections = fit_open_file_limit(limits.max_connections)
    state: ServerState = app.state.hypoderm
    if state.delivery is not None:  # compressed before listening: the first phone gets brotli, not gzip
        t0 = time.perf_counter()
        state.delivery.prepare()
        print(f"hypoderm serve: runtime and model compressed for phones in {time.perf_counter() - t0:.1f} s "
              "(brotli and gzip; kept for the next start)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, **uvicorn_options(limits))
