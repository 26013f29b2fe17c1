"""`hypoderm serve`: the mobile diagnosis web app and its JSON API (FastAPI + uvicorn).

The page runs the model in the browser (onnxruntime-web, WASM); the server also predicts, as a
fallback or by choice. Grad-CAM comes from the exported model's own outputs (features and
cam_weights, hypoderm.inference.explain), in numpy here and in JavaScript in the page; the server never
imports torch.

Hardening: uploads are capped in bytes (before they are parsed), in pixels and aspect ratio
(before they are decoded), and in time (header and body read deadlines); at most `max_decodes`
photos are decoded at once, so decode memory is bounded by that times the worst image, not by the
number of clients; every photo decodes straight to a working size of about what the model needs (JPEG DCT
scaling, then a box reduction fused with the colour conversion: hypoderm.imaging.io), and the Grad-CAM picture
is at most 512 px. The
format is sniffed from the bytes, never from the file name or the declared type; every error is a
JSON 4xx with a specific message (and a 500, should one ever happen, is JSON with the security
headers too); the Content-Security-Policy allows our own origin only, so the page makes no
third-party request. No uploaded image is ever written to disk: multipart bodies are parsed in
memory (hypoderm.app.upload).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hypoderm import __version__
from hypoderm.app.assets import IMMUTABLE, REVALIDATE, Delivery, sha256_file
from hypoderm.app.guard import release_memory
from hypoderm.app.upload import UploadError, image_from_multipart
from hypoderm.app.web_runtime import ORT_FILES, PACKAGED
from hypoderm.imaging.io import MAX_ASPECT_RATIO, SOURCE_SIZE_KEY
from hypoderm.inference import bundled_model
from hypoderm.inference.ood import with_gate
from hypoderm.inference.predictor import MIN_SOURCE_SIDE
from hypoderm.model_quality import metadata_problems

STATIC_DIR = Path(__file__).resolve().parent / "static"
# In a source checkout, `npm ci` puts onnxruntime-web here; a built wheel carries its own copy
# (hypoderm.app.web_runtime.PACKAGED); HYPODERM_WEB_ASSETS (or --web-assets) may name any folder holding
# `onnxruntime-web/dist`.
REPO_NODE_MODULES = Path(__file__).resolve().parents[3] / "node_modules"
WEB_ASSETS_ENV = "HYPODERM_WEB_ASSETS"

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a 12 MP phone JPEG is 3-6 MB
DEFAULT_MAX_PIXELS = 40_000_000  # above any phone camera in common use; bounds decode memory
# Photos decoded at once. Decode memory is this times the worst accepted image (a 40 MP PNG, TIFF or WebP
# at the limit: ~0.17 GB while it is decoded and reduced), whatever the number of clients; 2 for a small
# server (set --max-decodes to its cores).
DEFAULT_MAX_DECODES = 2
# ONNX Runtime threads per prediction. The server runs up to max_decodes predictions at once, one
# thread each; more intra-op threads only spin-wait for each other (measured on 12 MP JPEGs, 2 cores:
# 44 ms of server CPU per request with ORT's default, 31 ms with 1; benchmarks/app/README.md).
DEFAULT_SERVER_THREADS = 1
DEFAULT_BODY_TIMEOUT_S = 60.0  # a 10 MB upload at 1.5 Mbit/s (a slow mobile link) takes ~55 s
DEFAULT_HEADER_TIMEOUT_S = 10.0  # request line + headers: a few hundred bytes
DEFAULT_KEEP_ALIVE_S = 5.0  # uvicorn's default: an idle keep-alive connection is closed after this
DEFAULT_LIMIT_CONCURRENCY = 128  # predictions whose upload has arrived (queued or decoding); over it: JSON 503
# Uploads still arriving, counted apart from predictions so that stalled clients cannot hold the prediction
# slots (128 connections each sending 1 KB of a declared 5 MB body made every real prediction a 503 for a
# minute): per client address (over it: JSON 429) and in total (over it: JSON 503); the body deadline,
# the buffered-bytes budget and the connection cap bound them further.
DEFAULT_MAX_UPLOADS = 256
DEFAULT_MAX_UPLOADS_PER_CLIENT = 16
DEFAULT_MAX_CONNECTIONS = 512  # open sockets; over it a new connection is closed at once (fd safety)
# Upload bytes held in memory by all requests together; over it new uploads get 503. Without it,
# 512 slow clients each sending 10 MB would hold 5 GB.
DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024
MAX_HEADER_BYTES = 16384  # request line + headers (h11's incomplete-event limit)
# Connections accepted in one burst (asyncio accepts up to `backlog` at once before any of them is
# seen by the connection cap; uvicorn's 2048 let a flood exhaust 1024 file descriptors in one burst).
ACCEPT_BACKLOG = 128
# Release freed memory to the OS after decoding an image of at least this many (declared) pixels.
RELEASE_AFTER_PIXELS = 4_000_000

log = logging.getLogger("hypoderm.serve")

SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")

# 'wasm-unsafe-eval' lets WebAssembly compile (needed by onnxruntime-web) without allowing JS eval.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
       "img-src 'self' blob: data:; connect-src 'self'; worker-src 'self'; font-src 'self'; "
       "manifest-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
# Swagger UI sets inline styles; its page is the only one that gets 'unsafe-inline' for styles.
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Cross-origin isolation makes SharedArrayBuffer available, so onnxruntime-web can use threads.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}

# ImageLoadError.reason -> (HTTP status, error code)
_LOAD_ERRORS = {
    "empty": (400, "empty_upload"),
    "not_image": (415, "not_an_image"),
    "truncated": (422, "truncated_image"),
    "corrupt": (422, "corrupt_image"),
    "too_large": (413, "too_many_pixels"),
    "bad_aspect_ratio": (422, "bad_aspect_ratio"),
    "unreadable": (422, "unreadable_image"),
}


# Reason code (the page translates it): an ONNX file exported before the Grad-CAM outputs existed.
GRADCAM_MISSING = "no_gradcam_outputs"


class ModelLoadError(RuntimeError):
    """The model given to the server cannot be used (missing, not ONNX, bad sidecar)."""


class ApiError(Exception):
    """A client error answered as JSON: {"error": code, "detail": message}."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


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


def _ort_web_version(dist: Path | None) -> str | None:
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
    max_uploads_per_client: int = DEFAULT_MAX_UPLOADS_PER_CLIENT
    in_flight: int = 0  # predictions whose upload has arrived: queued or decoding (event loop only)
    uploads: Counter[str] = field(default_factory=Counter)  # uploads still arriving, by client address (event loop)
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
        uploading = sum(self.uploads.values())
        use = {"predictions": (self.in_flight, self.limit_concurrency),
               "uploads": (uploading, self.max_uploads),
               "upload_bytes": (self.buffered_bytes, self.max_buffered_bytes)}
        return {**{name: {"in_progress": n, "limit": limit} for name, (n, limit) in use.items()},
                "clients_at_upload_limit": sum(n >= self.max_uploads_per_client for n in self.uploads.values()),
                "saturated": [name for name, (n, limit) in use.items() if n >= limit]}

    def gradcam_status(self) -> tuple[bool, str | None]:
        """(available, reason code): the heat map needs the exported model's Grad-CAM outputs."""
        if getattr(self.predictor, "has_gradcam", False):
            return True, None
        return False, GRADCAM_MISSING


def _load_predictor(model_path: Path, threads: int | None) -> Any:
    from hypoderm.inference import OnnxPredictor

    return OnnxPredictor(model_path, threads=threads)


def _json_error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, "status": status}, status_code=status)


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown client"


class _Budget:
    """Upload bytes held by all requests together (ServerState.buffered_bytes), event loop only."""

    def __init__(self, state: ServerState) -> None:
        self.state, self.held = state, 0

    def take(self, n: int) -> None:
        if self.state.buffered_bytes + n > self.state.max_buffered_bytes:
            log.warning("hypoderm serve: refused an upload: %d bytes of uploads already held (limit %d); "
                        "answered 503", self.state.buffered_bytes, self.state.max_buffered_bytes)
            raise ApiError(503, "server_busy", "the server is receiving too many uploads at once; retry in a moment")
        self.state.buffered_bytes += n
        self.held += n

    def release(self) -> None:
        self.state.buffered_bytes -= self.held
        self.held = 0


def _refuse_if_busy(state: ServerState, request: Request) -> None:
    """JSON 503 when `limit_concurrency` predictions (uploads that have arrived) are queued or decoding. Health,
    model info and the page are not counted: a probe still answers under a flood."""
    if state.in_flight >= state.limit_concurrency:
        log.warning("hypoderm serve: %s: refused, %d predictions in progress (limit %d); answered 503",
                    _peer(request), state.in_flight, state.limit_concurrency)
        raise ApiError(503, "server_busy", f"{state.in_flight} predictions in progress (limit "
                       f"{state.limit_concurrency}); retry in a moment")


@contextlib.contextmanager
def _upload_slot(state: ServerState, request: Request) -> Iterator[None]:
    """Count one upload while its body arrives: JSON 429 when this client address already has
    `max_uploads_per_client` uploads arriving, JSON 503 when all clients together have `max_uploads`."""
    client = request.client.host if request.client else "unknown"
    if state.uploads[client] >= state.max_uploads_per_client:
        log.warning("hypoderm serve: %s: refused, %d uploads from this address still arriving (limit %d); "
                    "answered 429", _peer(request), state.uploads[client], state.max_uploads_per_client)
        raise ApiError(429, "too_many_uploads", f"{state.uploads[client]} uploads from {client} are still arriving "
                       f"(limit {state.max_uploads_per_client} per client); wait for them to finish")
    if sum(state.uploads.values()) >= state.max_uploads:
        log.warning("hypoderm serve: %s: refused, %d uploads still arriving (limit %d); answered 503",
                    _peer(request), sum(state.uploads.values()), state.max_uploads)
        raise ApiError(503, "server_busy", f"{sum(state.uploads.values())} uploads are arriving (limit "
                       f"{state.max_uploads}); retry in a moment")
    state.uploads[client] += 1
    try:
        yield
    finally:
        state.uploads[client] -= 1
        if not state.uploads[client]:
            del state.uploads[client]


async def _read_limited(request: Request, limit: int, timeout: float = DEFAULT_BODY_TIMEOUT_S,
                        budget: _Budget | None = None) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes (never buffered past it) or
    takes longer than `timeout` seconds to arrive (a stalled upload must not hold memory and a
    connection forever), or when all uploads together would pass the server's `budget`. A client
    that leaves mid-upload is logged as one line, not a traceback."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ApiError(400, "bad_content_length", f"Content-Length is not a number: {declared!r}") from None
        if n > limit:
            raise ApiError(413, "upload_too_large", f"upload too large: {n} bytes > limit {limit} bytes")
    chunks: list[bytes] = []
    total = 0

    async def read() -> None:
        nonlocal total
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise ApiError(413, "upload_too_large", f"upload too large: more than the limit of {limit} bytes")
            if budget is not None:
                budget.take(len(chunk))
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        log.warning("hypoderm serve: %s: upload not complete within %gs (%d bytes received); answered 408",
                    _peer(request), timeout, total)
        raise ApiError(408, "upload_timeout", f"upload not complete within {timeout:g} s ({total} bytes received)"
                       ) from None
    except ClientDisconnect:
        log.warning("hypoderm serve: %s: client disconnected during the upload (%d bytes received)",
                    _peer(request), total)
        raise ApiError(400, "client_disconnected", "the client disconnected before the upload was complete") from None
    return b"".join(chunks)


async def _image_bytes(request: Request, state: ServerState, budget: _Budget | None = None) -> bytes:
    """The uploaded file's bytes, from multipart field `image` (or `file`) or a raw image body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (ctype == "multipart/form-data" or ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise ApiError(415, "unsupported_content_type",
                       f"unsupported Content-Type {ctype or '(none)'!r}: send multipart/form-data with the photo "
                       "in field 'image', or the photo itself as the body (image/* or application/octet-stream)")
    # Multipart framing adds a few hundred bytes; allow for it so the limit applies to the photo.
    body = await _read_limited(request, state.max_upload_bytes + (16384 if ctype == "multipart/form-data" else 0),
                               state.body_timeout, budget)
    if ctype != "multipart/form-data":
        return body
    try:
        # In memory: Starlette's parser would spool a part over 1 MiB to a temporary file.
        return image_from_multipart(body, request.headers.get("content-type", ""), state.max_upload_bytes)
    except UploadError as e:
        raise ApiError(e.status, e.code, e.detail) from None


def _decode(data: bytes, max_pixels: int, min_size: int | None = None) -> Any:
    from hypoderm.imaging.io import ImageLoadError, load_rgb_bytes

    try:
        return load_rgb_bytes(data, max_pixels=max_pixels, min_size=min_size)
    except ImageLoadError as e:
        status, code = _LOAD_ERRORS.get(e.reason, (422, "unreadable_image"))
        raise ApiError(status, code, str(e)) from None


def _predict(state: ServerState, data: bytes, top_k: int, gradcam: bool, framed: bool = False) -> dict[str, Any]:
    """Decode and predict one upload, at most `state.max_decodes` at a time (memory = that bound times
    the worst image). Expected failures are ApiErrors (4xx); anything else is a bug and becomes a 500."""
    from hypoderm.imaging.io import ImageShapeError
    from hypoderm.inference import decode_min_size_for

    spec = getattr(state.predictor, "spec", None)
    with state.decode_slots:
        big = False
        try:
            min_size = decode_min_size_for(spec) if spec is not None else None
            img = _decode(data, state.max_pixels, min_size)
            width, height = img.info.get(SOURCE_SIZE_KEY, img.size)
            big = width * height >= RELEASE_AFTER_PIXELS
            result = _predict_image(state, img, top_k, gradcam, framed)
        except ImageShapeError as e:
            raise ApiError(422, "bad_aspect_ratio", str(e)) from None
        except MemoryError:
            big = True
            raise ApiError(413, "too_many_pixels", "not enough memory to process this image") from None
        finally:
            if big:
                release_memory()
    result["image"] = {"width": width, "height": height}  # the photo's own size, not the reduced decode's
    result["inference"] = "server"
    return result


def _predict_image(state: ServerState, img: Any, top_k: int, gradcam: bool, framed: bool) -> dict[str, Any]:
    """The result dict, with the heat map of the top class over the photo (at most 512 px) when asked
    (hypoderm.inference.explain: the same definition as `predict --cam` and the browser) as a PNG data URL;
    one preprocessing and one model run either way. `framed`: the upload is the square framed in the app
    (the model sees all of it: hypoderm.inference.prepare)."""
    available, reason = state.gradcam_status()
    if not gradcam or not available:
        result = dict(state.predictor.predict_image(img, top_k=top_k, framed=framed))
        if gradcam:
            result["gradcam"] = {"available": False, "reason": reason}
        return result
    result, overlay = state.predictor.predict_with_overlay(img, top_k=top_k, framed=framed)
    result = dict(result)
    if overlay is None:  # a rejected photo (not_skin) has no class to explain
        result["gradcam"] = {"available": False, "reason": "not_skin"}
        return result
    buf = io.BytesIO()
    overlay.save(buf, format="PNG")
    result["gradcam"] = {"available": True, "label": result["top_k"][0]["label"],
                         "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")}
    return result


def _model_info(state: ServerState) -> dict[str, Any]:
    meta = state.metadata
    available, reason = state.gradcam_status()
    ort_version = _ort_web_version(state.web_assets)
    delivery = _delivery(state)
    base = delivery.ort_base
    wasm = delivery.ort.get("ort-wasm-simd-threaded.wasm")
    return {
        "format": meta.get("format"),
        "model_name": meta.get("model_name"),
        "version": meta.get("version"),
        "precision": meta.get("precision"),
        "class_names": list(meta.get("class_names", [])),
        "input": meta.get("input"),
        "output": meta.get("output"),
        "temperature": meta.get("temperature", 1.0),
        "abstain_threshold": meta.get("abstain_threshold"),
        "ood": with_gate(meta.get("ood")),  # completed, so the browser runs the same gate as predict
        "min_source_side": MIN_SOURCE_SIDE,  # a framed square with fewer pixels across is too small to judge
        "metrics": meta.get("metrics", {}),
        "training_data": meta.get("training_data"),
        # quality checks the model failed at export (`export --force`): the page shows a warning
        "quality": meta.get("quality") or {"problems": []},
        "disclaimer": meta.get("disclaimer", "Decision aid, not a medical device."),
        "model_url": delivery.model_url,
        "model_sha256": state.model_sha256,
        "model_bytes": state.model_path.stat().st_size,
        # the metadata's Grad-CAM block (output names, layer) lets the page draw the map itself
        "gradcam": {**(meta.get("gradcam") or {}), "available": available, "reason": reason},
        "browser_inference": {
            "available": state.web_assets is not None,
            "runtime": f"onnxruntime-web {ort_version}" if ort_version else None,
            "script": f"{base}ort.wasm.min.mjs" if base else None,
            # the page downloads the WASM itself (to show progress) and hands it to onnxruntime-web
            "wasm_url": f"{base}ort-wasm-simd-threaded.wasm" if base else None,
            "wasm_bytes": wasm.size if wasm else None,
            "reason": None if state.web_assets else
            ("onnxruntime-web is not installed on this server "
             "(run scripts/install_web_assets.sh or set HYPODERM_WEB_ASSETS)"),
        },
        "limits": {"max_upload_bytes": state.max_upload_bytes, "max_pixels": state.max_pixels,
                   "max_aspect_ratio": MAX_ASPECT_RATIO, "upload_timeout_s": state.body_timeout},
    }


def _delivery(state: ServerState) -> Delivery:
    if state.delivery is None:  # a ServerState made by hand (tests) gets its delivery on first use
        state.delivery = Delivery.build(state.model_path, STATIC_DIR, state.web_assets, ORT_FILES)
    return state.delivery


def _service_worker(state: ServerState) -> str:
    """sw.js with the cache name (app version + model hash) and the files to precache filled in."""
    delivery = _delivery(state)
    files = ["/", "/manifest.webmanifest", "/api/v1/model", delivery.model_url]
    files += sorted(f"/static/{name}" for name in delivery.static)
    if delivery.ort_base is not None:
        files += [f"{delivery.ort_base}{f}" for f in ORT_FILES]
    text = (STATIC_DIR / "sw.js").read_text(encoding="utf-8")
    shell = hashlib.sha256()
    for p in sorted(STATIC_DIR.rglob("*")):
        if p.is_file():
            shell.update(p.read_bytes())
    cache = (f"hypoderm-{__version__}-{shell.hexdigest()[:8]}-{state.model_sha256[:8]}-"
             f"{_ort_web_version(state.web_assets) or 'noort'}")
    return text.replace("__HYPODERM_CACHE__", cache).replace("__HYPODERM_PRECACHE__", json.dumps(files))


def create_app(model: str | os.PathLike[str] | None = None, *, web_assets: str | os.PathLike[str] | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               threads: int | None = None, max_decodes: int = DEFAULT_MAX_DECODES,
               body_timeout: float = DEFAULT_BODY_TIMEOUT_S, limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY,
               max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES, cache_dir: Path | None = None,
               max_uploads: int = DEFAULT_MAX_UPLOADS, max_uploads_per_client: int = DEFAULT_MAX_UPLOADS_PER_CLIENT
               ) -> FastAPI:
    """The app for one model. Raises ModelLoadError when the model cannot be used. `cache_dir` holds the
    precompressed runtime and model (default: hypoderm.app.assets.default_cache_dir())."""
    if min(max_decodes, limit_concurrency, max_uploads, max_uploads_per_client) < 1 or body_timeout <= 0 \
            or max_buffered_bytes < max_upload_bytes:
        raise ValueError("max_decodes, limit_concurrency, max_uploads and max_uploads_per_client must be >= 1, "
                         "body_timeout > 0, and max_buffered_bytes >= max_upload_bytes")
    model_path = resolve_model_path(model)
    try:
        predictor = _load_predictor(model_path, threads)
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - report any loader failure as a model problem, without a traceback
        raise ModelLoadError(f"cannot load model {model_path}: {e}") from e
    metadata = dict(predictor.metadata)
    state = ServerState(model_path=model_path, predictor=predictor, metadata=metadata,
                        web_assets=find_web_assets(web_assets), max_upload_bytes=max_upload_bytes,
                        max_pixels=max_pixels, max_decodes=max_decodes, body_timeout=body_timeout,
                        limit_concurrency=limit_concurrency, max_buffered_bytes=max_buffered_bytes,
                        max_uploads=max_uploads, max_uploads_per_client=max_uploads_per_client,
                        model_sha256=sha256_file(model_path))
    state.delivery = Delivery.build(model_path, STATIC_DIR, state.web_assets, ORT_FILES, cache_dir)

    app = FastAPI(title="hypoderm", version=__version__, docs_url=None, redoc_url=None,
                  description="Diagnosis aid for hypopigmented skin diseases. A decision aid, not a diagnosis.")
    app.state.hypoderm = state

    _add_error_handling(app, state)
    _add_api(app, state)
    _add_pages(app, state, state.delivery)
    return app


def _add_error_handling(app: FastAPI, state: ServerState) -> None:
    """Security headers on every response; every error, expected or not, as JSON `{"error": {...}}`."""
    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        response.headers.setdefault("Content-Security-Policy", CSP)
        if response.status_code >= 400 and request.url.path.startswith("/api/"):
            state.client_errors += 1
        return response

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return _json_error(e.status, e.code, e.detail)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        # Starlette runs this handler outside the middleware stack, so the security headers are added
        # here; the exception is then re-raised by Starlette and logged by uvicorn with its traceback.
        state.client_errors += request.url.path.startswith("/api/")
        response = _json_error(500, "internal_error", f"internal server error ({type(e).__name__}); "
                               "the request was not processed")
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = CSP
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _json_error(e.status_code, code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors()]
        return _json_error(422, "invalid_parameter", "; ".join(parts) or "invalid request")


def _add_api(app: FastAPI, state: ServerState) -> None:
    """/api/v1: health, model info, predict (bounded: in-flight predictions, buffered bytes, decodes)."""
    @app.get("/api/v1/health", tags=["api"], summary="Liveness, model status and load (status 'busy' at a limit)")
    def health() -> dict[str, Any]:
        load = state.load()
        return {"status": "busy" if load["saturated"] else "ok", "load": load, "version": __version__,
                "model_loaded": True,
                "model_name": state.metadata.get("model_name"), "uptime_s": round(time.time() - state.started, 1),
                "predictions": state.predictions, "client_errors": state.client_errors,
                "browser_inference": state.web_assets is not None}

    @app.get("/api/v1/model", tags=["api"], summary="Classes, version, metrics, preprocessing and thresholds")
    def model_info() -> dict[str, Any]:
        return _model_info(state)

    @app.post("/api/v1/predict", tags=["api"],
              summary="Diagnose one photo (multipart field 'image', or a raw image body)",
              responses={400: {"description": "empty or malformed upload"}, 408: {"description": "upload too slow"},
                         413: {"description": "too many bytes or pixels"},
                         415: {"description": "not an image / wrong Content-Type"},
                         422: {"description": "truncated or corrupt image, or extreme aspect ratio"},
                         429: {"description": "too many uploads from this client still arriving"},
                         503: {"description": "server busy (too many predictions or uploads in progress)"}})
    async def predict(request: Request, top_k: int = Query(3, ge=1, le=20),
                      gradcam: bool = Query(False, description="add a Grad-CAM heatmap (needs a model exported "
                                                                "with the Grad-CAM outputs)"),
                      framed: bool = Query(False, description="the photo is the square the user framed (the app "
                                                              "sends it): the model sees all of it, resized straight "
                                                              "to its input size, instead of the usual centre crop")
                      ) -> dict[str, Any]:
        _refuse_if_busy(state, request)  # before the upload: no client sends 10 MB to hear "busy"
        budget = _Budget(state)
        try:
            with _upload_slot(state, request):
                data = await _image_bytes(request, state, budget)
            _refuse_if_busy(state, request)  # the upload has arrived: only now does it count as a prediction
            state.in_flight += 1
            try:
                result = await run_in_threadpool(_predict, state, data, top_k, gradcam, framed)
            finally:
                state.in_flight -= 1
        finally:
            budget.release()
        state.predictions += 1
        return result


def _add_pages(app: FastAPI, state: ServerState, delivery: Delivery) -> None:
    """The web app, its runtime and model (content-hashed immutable URLs + revalidated fixed ones), the API docs."""
    @app.get("/openapi-docs", include_in_schema=False)
    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        swagger = (state.web_assets.parents[1] / "swagger-ui-dist") if state.web_assets else None
        if swagger is None or not all((swagger / f).is_file() for f in SWAGGER_FILES):
            html = ("<!doctype html><title>hypoderm API</title><p>The OpenAPI schema is at "
                    "<a href='/openapi.json'>/openapi.json</a> (install the web assets for the interactive docs).")
            return HTMLResponse(html)
        html = ("<!doctype html><html><head><meta charset='utf-8'><title>hypoderm API</title>"
                "<link rel='stylesheet' href='/vendor/swagger/swagger-ui.css'></head><body><div id='swagger-ui'></div>"
                "<script src='/vendor/swagger/swagger-ui-bundle.js'></script><script src='/static/js/docs.js'></script>"
                "</body></html>")
        return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_CSP})

    @app.api_route("/vendor/ort/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    def ort_file(request: Request, name: str) -> Response:
        # The fixed URL (revalidated); the page uses the content-hashed one below.
        if name not in delivery.ort:
            raise ApiError(404, "not_found", f"no such runtime file: {name}")
        return delivery.store.response(delivery.ort[name], request, REVALIDATE)

    @app.api_route("/vendor/ort/{version}/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    def ort_file_hashed(request: Request, version: str, name: str) -> Response:
        if name not in delivery.ort or version != delivery.ort_hash:
            raise ApiError(404, "not_found", f"no such runtime file: {version}/{name} (this server has "
                           f"{delivery.ort_base or 'no runtime'})")
        return delivery.store.response(delivery.ort[name], request, IMMUTABLE)

    @app.get("/vendor/swagger/{name}", include_in_schema=False)
    def swagger_file(name: str) -> Response:
        swagger = (state.web_assets.parents[1] / "swagger-ui-dist") if state.web_assets else None
        if swagger is None or name not in SWAGGER_FILES or not (swagger / name).is_file():
            raise ApiError(404, "not_found", f"no such docs file: {name}")
        return FileResponse(swagger / name, headers={"Cache-Control": "no-cache"})

    @app.api_route("/model/model.onnx", methods=["GET", "HEAD"], include_in_schema=False)
    def model_file(request: Request) -> Response:
        return delivery.store.response(delivery.model, request, REVALIDATE)

    @app.api_route("/model/{version}/model.onnx", methods=["GET", "HEAD"], include_in_schema=False)
    def model_file_hashed(request: Request, version: str) -> Response:
        # Only the current model's hash: an old page asking for an old model gets a clear 404, never
        # other bytes under a URL that caches forever.
        if version != delivery.model.sha256[:16]:
            raise ApiError(404, "not_found", f"no model {version} on this server (it serves {delivery.model_url})")
        return delivery.store.response(delivery.model, request, IMMUTABLE)

    @app.get("/sw.js", include_in_schema=False)
    def service_worker() -> Response:
        return Response(_service_worker(state), media_type="text/javascript",
                        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})

    @app.api_route("/manifest.webmanifest", methods=["GET", "HEAD"], include_in_schema=False)
    def manifest(request: Request) -> Response:
        return delivery.store.response(delivery.static["manifest.webmanifest"], request, REVALIDATE)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index(request: Request) -> Response:
        return delivery.store.response(delivery.static["index.html"], request, REVALIDATE)

    @app.api_route("/static/{name:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def static_file(request: Request, name: str) -> Response:
        # Only the files found at startup: a fixed list, so no path can leave the folder.
        if name not in delivery.static:
            raise ApiError(404, "not_found", f"no such static file: {name}")
        return delivery.store.response(delivery.static[name], request, REVALIDATE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="model.onnx (or its folder) made by `hypoderm export`; default: the bundled model")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--web-assets", default=None,
                        help="folder holding onnxruntime-web/dist for in-browser inference "
                             f"(default: ${WEB_ASSETS_ENV} or the repository's node_modules)")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
                        help="largest accepted upload in MiB (default 10)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"largest accepted image in pixels (default {DEFAULT_MAX_PIXELS})")
    parser.add_argument("--threads", type=int, default=DEFAULT_SERVER_THREADS,
                        help=f"ONNX Runtime threads per server prediction (default {DEFAULT_SERVER_THREADS}; "
                             "predictions run in parallel up to --max-decodes)")
    limits = parser.add_argument_group("limits against slow, stalled or too many clients")
    limits.add_argument("--max-decodes", type=int, default=DEFAULT_MAX_DECODES,
                        help="photos decoded at once; memory is this times the worst image "
                             f"(default {DEFAULT_MAX_DECODES})")
    limits.add_argument("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT_S,
                        help=f"seconds to receive a request's headers (default {DEFAULT_HEADER_TIMEOUT_S:g})")
    limits.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_S,
                        help=f"seconds to receive an upload; slower gets 408 (default {DEFAULT_BODY_TIMEOUT_S:g})")
    limits.add_argument("--keep-alive-timeout", type=float, default=DEFAULT_KEEP_ALIVE_S,
                        help=f"seconds an idle keep-alive connection stays open (default {DEFAULT_KEEP_ALIVE_S:g})")
    limits.add_argument("--limit-concurrency", type=int, default=DEFAULT_LIMIT_CONCURRENCY,
                        help="predictions whose upload has arrived (queued or decoding) before new ones get a JSON "
                             f"503; health and the page still answer (default {DEFAULT_LIMIT_CONCURRENCY})")
    limits.add_argument("--max-uploads", type=int, default=DEFAULT_MAX_UPLOADS,
                        help="uploads still arriving, all clients together, before new ones get a JSON 503 "
                             f"(default {DEFAULT_MAX_UPLOADS})")
    limits.add_argument("--max-uploads-per-client", type=int, default=DEFAULT_MAX_UPLOADS_PER_CLIENT,
                        help="uploads still arriving from one client address before its new ones get a JSON 429 "
                             f"(default {DEFAULT_MAX_UPLOADS_PER_CLIENT}; behind a reverse proxy every client has the "
                             "proxy's address: raise it)")
    limits.add_argument("--max-buffered-mb", type=float, default=DEFAULT_MAX_BUFFERED_BYTES / 2**20,
                        help="upload MiB held in memory by all requests together before new uploads get 503 "
                             f"(default {DEFAULT_MAX_BUFFERED_BYTES // 2**20})")
    limits.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                        help=f"open connections before new ones are closed at once (default {DEFAULT_MAX_CONNECTIONS})")


def _fit_open_file_limit(max_connections: int) -> int:
    """Lift the soft open-file limit to fit `max_connections` plus a burst of accepts and the files the
    server itself holds (within the hard limit), and return the connection cap that fits under it,
    so that the cap, not EMFILE ("Too many open files" tracebacks), is what stops a flood."""
    spare = ACCEPT_BACKLOG + 128  # one accept burst + model, libraries, logs, threads
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = max_connections + spare
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    except (ImportError, ValueError, OSError):
        return max_connections
    if soft != resource.RLIM_INFINITY and max_connections + spare > soft:
        fitted = max(16, soft - spare)
        print(f"hypoderm serve: --max-connections lowered from {max_connections} to {fitted} to fit the open-file "
              f"limit of {soft}", file=sys.stderr)
        return fitted
    return max_connections


def uvicorn_options(args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn.run keyword arguments for the limits of `args` (kept apart so tests can check them)."""
    from hypoderm.app.guard import guarded_protocol

    return {"http": guarded_protocol(args.header_timeout, args.max_connections),
            # The app limits predictions itself (JSON 503, health exempt); uvicorn's own plain-text 503 is
            # only a backstop. Connections over the cap still count until their close completes (up to
            # two accept bursts), so the backstop sits above that.
            "timeout_keep_alive": args.keep_alive_timeout,
            "limit_concurrency": args.max_connections + 2 * ACCEPT_BACKLOG + 1,
            "h11_max_incomplete_event_size": MAX_HEADER_BYTES, "backlog": ACCEPT_BACKLOG, "server_header": False,
            "log_level": "warning"}


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        print(f"hypoderm serve: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        print("hypoderm serve: --max-upload-mb and --max-pixels must be positive", file=sys.stderr)
        return 2
    positive = {"--max-decodes": args.max_decodes, "--header-timeout": args.header_timeout,
                "--body-timeout": args.body_timeout, "--keep-alive-timeout": args.keep_alive_timeout,
                "--limit-concurrency": args.limit_concurrency, "--max-connections": args.max_connections,
                "--max-uploads": args.max_uploads, "--max-uploads-per-client": args.max_uploads_per_client,
                "--max-buffered-mb": args.max_buffered_mb}
    bad = [name for name, value in positive.items() if not value > 0]
    if bad:
        print(f"hypoderm serve: {', '.join(bad)} must be positive", file=sys.stderr)
        return 2
    try:
        app = create_app(args.model, web_assets=args.web_assets, max_upload_bytes=int(args.max_upload_mb * 2**20),
                         max_pixels=args.max_pixels, threads=args.threads, max_decodes=args.max_decodes,
                         body_timeout=args.body_timeout, limit_concurrency=args.limit_concurrency,
                         max_uploads=args.max_uploads, max_uploads_per_client=args.max_uploads_per_client,
                         max_buffered_bytes=max(int(args.max_buffered_mb * 2**20), int(args.max_upload_mb * 2**20)))
    except ModelLoadError as e:
        print(f"hypoderm serve: error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    state: ServerState = app.state.hypoderm
    if state.web_assets is None:
        print("hypoderm serve: onnxruntime-web not found; the page will use server inference "
              f"(run scripts/install_web_assets.sh or set {WEB_ASSETS_ENV})", file=sys.stderr)
    problems = metadata_problems(state.metadata)
    if problems:  # the page says so too; whoever starts the server should hear it first
        print(f"hypoderm serve: WARNING: this model failed its quality checks when it was exported "
              f"({'; '.join(p['message'] for p in problems)}); do not rely on its answers.", file=sys.stderr)
    print(f"hypoderm serve: {state.metadata.get('model_name')} on http://{args.host}:{args.port}/ "
          f"(API docs at /docs). A decision aid, not a diagnosis.", file=sys.stderr)
    if not log.handlers:  # one plain line per rejected client on stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    args.max_connections = _fit_open_file_limit(args.max_connections)
    if state.delivery is not None:  # brotli-11 of the runtime takes ~26 s once; the first phone should not wait
        state.delivery.warm_in_background()
    uvicorn.run(app, host=args.host, port=args.port, **uvicorn_options(args))
    return 0
