"""`hypoderm serve`: the mobile diagnosis web app and its JSON API (FastAPI + uvicorn).

The page runs the model in the browser (onnxruntime-web, WASM); the server also predicts, as a
fallback or by choice, and adds Grad-CAM when the model's sidecar names a companion PyTorch
checkpoint. With an ONNX model the server never imports torch; torch and pytorch-grad-cam are
imported lazily, only for Grad-CAM.

Hardening: uploads are capped in bytes (before they are parsed) and in pixels (before they are
decoded); the format is sniffed from the bytes, never from the file name or the declared type;
every error is a JSON 4xx with a specific message; the Content-Security-Policy allows our own
origin only, so the page makes no third-party request. No uploaded image is ever written to disk.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from hypoderm import __version__
from hypoderm.inference import bundled_model
from hypoderm.ood import with_gate

STATIC_DIR = Path(__file__).resolve().parent / "static"
# In a source checkout, `npm ci` puts onnxruntime-web here; a pip-installed user points
# HYPODERM_WEB_ASSETS (or --web-assets) at any folder holding `onnxruntime-web/dist`.
REPO_NODE_MODULES = Path(__file__).resolve().parents[3] / "node_modules"
WEB_ASSETS_ENV = "HYPODERM_WEB_ASSETS"

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a 12 MP phone JPEG is 3-6 MB
DEFAULT_MAX_PIXELS = 40_000_000  # above any phone camera in common use; bounds decode memory

# Only the WASM build of onnxruntime-web is served: the ESM loader, its worker/glue module and
# the SIMD+threads binary it loads (the other builds are WebGL/WebGPU/JSPI variants we never use).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
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
    "unreadable": (422, "unreadable_image"),
}


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
        raise ModelLoadError(f"model not found: {path} (expected a model.onnx made by `hypoderm export`, or its folder)")
    if path.suffix.lower() != ".onnx":
        raise ModelLoadError(f"{path} is not an .onnx file; export the checkpoint first with `hypoderm export`")
    return path


def find_web_assets(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding onnxruntime-web's `dist` files, or None when they are not installed."""
    candidates = [explicit, os.environ.get(WEB_ASSETS_ENV), REPO_NODE_MODULES]
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class GradCamExplainer:
    """Grad-CAM on the companion PyTorch checkpoint (torch and pytorch-grad-cam imported lazily)."""

    def __init__(self, checkpoint: Path) -> None:
        import torch
        from pytorch_grad_cam import GradCAM

        from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint

        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
        ckpt = load_checkpoint(checkpoint)
        self.model = model_from_checkpoint(ckpt).eval()
        convs = [m for m in self.model.modules() if isinstance(m, torch.nn.Conv2d)]
        if not convs:
            raise ModelLoadError(f"{checkpoint}: no convolution layer to explain")
        # The last convolution sees the most semantic, still spatial, features (Selvaraju et al.).
        self.cam = GradCAM(model=self.model, target_layers=[convs[-1]])
        self.class_names: list[str] = list(ckpt["class_names"])
        self._lock = threading.Lock()  # Grad-CAM hooks keep per-call state

    def overlay_png(self, x: Any, rgb01: Any, class_index: int) -> bytes:
        """PNG of the heatmap over the model's input crop for class `class_index`."""
        import numpy as np
        import torch
        from PIL import Image
        from pytorch_grad_cam.utils.image import show_cam_on_image
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        with self._lock:
            heat = self.cam(input_tensor=torch.from_numpy(x), targets=[ClassifierOutputTarget(class_index)])[0]
        overlay = show_cam_on_image(np.asarray(rgb01, np.float32), heat, use_rgb=True)
        buf = io.BytesIO()
        Image.fromarray(overlay).save(buf, format="PNG")
        return buf.getvalue()


@dataclass
class ServerState:
    """Everything one running app holds: the model, its metadata, the limits, counters."""

    model_path: Path
    predictor: Any
    metadata: dict[str, Any]
    web_assets: Path | None
    max_upload_bytes: int
    max_pixels: int
    checkpoint: Path | None = None
    gradcam_error: str | None = None
    explainer: GradCamExplainer | None = None
    model_sha256: str = ""
    started: float = field(default_factory=time.time)
    predictions: int = 0
    client_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def gradcam_status(self) -> tuple[bool, str | None]:
        if self.checkpoint is None:
            return False, "no companion PyTorch checkpoint (the model's sidecar JSON names none)"
        if self.gradcam_error:
            return False, self.gradcam_error
        return True, None

    def get_explainer(self) -> GradCamExplainer | None:
        """Load the checkpoint on first use; remember a failure so it is reported, not retried."""
        with self._lock:
            if self.explainer is None and self.checkpoint is not None and self.gradcam_error is None:
                try:
                    self.explainer = GradCamExplainer(self.checkpoint)
                except Exception as e:  # noqa: BLE001 - any failure means "no Grad-CAM", said in the API
                    self.gradcam_error = f"Grad-CAM unavailable: {type(e).__name__}: {e}"
            return self.explainer


def _load_predictor(model_path: Path, threads: int | None) -> Any:
    from hypoderm.inference import OnnxPredictor

    return OnnxPredictor(model_path, threads=threads)


def _sidecar(model_path: Path) -> dict[str, Any]:
    side = model_path.with_suffix(".json")
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{side} is not valid JSON ({e})") from e


def _json_error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, "status": status}, status_code=status)


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes (never buffered past it)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ApiError(400, "bad_content_length", f"Content-Length is not a number: {declared!r}") from None
        if n > limit:
            raise ApiError(413, "upload_too_large", f"upload too large: {n} bytes > limit {limit} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, "upload_too_large", f"upload too large: more than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _image_bytes(request: Request, state: ServerState) -> bytes:
    """The uploaded file's bytes, from multipart field `image` (or `file`) or a raw image body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (ctype == "multipart/form-data" or ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise ApiError(415, "unsupported_content_type",
                       f"unsupported Content-Type {ctype or '(none)'!r}: send multipart/form-data with the photo "
                       "in field 'image', or the photo itself as the body (image/* or application/octet-stream)")
    # Multipart framing adds a few hundred bytes; allow for it so the limit applies to the photo.
    body = await _read_limited(request, state.max_upload_bytes + (16384 if ctype == "multipart/form-data" else 0))
    if ctype != "multipart/form-data":
        return body

    async def stream():  # MultiPartParser wants an async byte stream
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=2, max_fields=10,
                                     max_part_size=state.max_upload_bytes).parse()
    except MultiPartException as e:
        raise ApiError(400, "bad_multipart", f"malformed multipart upload: {e.message}") from None
    upload = form.get("image") or form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError(422, "missing_image", "no file in the multipart field 'image'")
    data = await upload.read()
    await upload.close()
    if len(data) > state.max_upload_bytes:
        raise ApiError(413, "upload_too_large", f"upload too large: {len(data)} bytes > limit {state.max_upload_bytes} bytes")
    return data


def _decode(data: bytes, max_pixels: int) -> Any:
    from hypoderm.data.io import ImageLoadError, load_rgb_bytes

    try:
        return load_rgb_bytes(data, max_pixels=max_pixels)
    except ImageLoadError as e:
        status, code = _LOAD_ERRORS.get(e.reason, (422, "unreadable_image"))
        raise ApiError(status, code, str(e)) from None


def _predict(state: ServerState, data: bytes, top_k: int, gradcam: bool) -> dict[str, Any]:
    img = _decode(data, state.max_pixels)
    result = dict(state.predictor.predict_image(img, top_k=top_k))
    result["image"] = {"width": img.width, "height": img.height}
    result["inference"] = "server"
    if gradcam:
        result["gradcam"] = _gradcam(state, img, result)
    return result


def _gradcam(state: ServerState, img: Any, result: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from hypoderm.preprocess import PreprocessSpec, center_crop_array, preprocess, resized_uint8

    explainer = state.get_explainer()
    available, reason = state.gradcam_status()
    if explainer is None or not available:
        return {"available": False, "reason": reason}
    label = result["top_k"][0]["label"]
    spec = PreprocessSpec.from_dict(state.metadata["input"])
    x = preprocess(img, spec)[None]
    rgb01 = center_crop_array(resized_uint8(img, spec), spec.size).astype(np.float32) / 255.0
    png = explainer.overlay_png(x, rgb01, explainer.class_names.index(label))
    return {"available": True, "label": label,
            "image": "data:image/png;base64," + base64.b64encode(png).decode("ascii")}


def _model_info(state: ServerState) -> dict[str, Any]:
    meta = state.metadata
    available, reason = state.gradcam_status()
    ort_version = _ort_web_version(state.web_assets)
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
        "metrics": meta.get("metrics", {}),
        "training_data": meta.get("training_data"),
        "disclaimer": meta.get("disclaimer", "Decision aid, not a medical device."),
        "model_url": "/model/model.onnx",
        "model_sha256": state.model_sha256,
        "model_bytes": state.model_path.stat().st_size,
        "gradcam": {"available": available, "reason": reason},
        "browser_inference": {
            "available": state.web_assets is not None,
            "runtime": f"onnxruntime-web {ort_version}" if ort_version else None,
            "script": "/vendor/ort/ort.wasm.min.mjs" if state.web_assets else None,
            "reason": None if state.web_assets else
            "onnxruntime-web is not installed on this server (run scripts/install_web_assets.sh or set HYPODERM_WEB_ASSETS)",
        },
        "limits": {"max_upload_bytes": state.max_upload_bytes, "max_pixels": state.max_pixels},
    }


def _service_worker(state: ServerState) -> str:
    """sw.js with the cache name (app version + model hash) and the files to precache filled in."""
    files = ["/", "/manifest.webmanifest", "/api/v1/model", "/model/model.onnx"]
    files += sorted("/static/" + p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*")
                    if p.is_file() and p.name != "sw.js")
    if state.web_assets is not None:
        files += [f"/vendor/ort/{f}" for f in ORT_FILES]
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
               threads: int | None = None) -> FastAPI:
    """The app for one model. Raises ModelLoadError when the model cannot be used."""
    model_path = resolve_model_path(model)
    try:
        predictor = _load_predictor(model_path, threads)
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - report any loader failure as a model problem, without a traceback
        raise ModelLoadError(f"cannot load model {model_path}: {e}") from e
    metadata = dict(predictor.metadata)
    side = _sidecar(model_path)
    ckpt_name = side.get("checkpoint") or metadata.get("checkpoint")
    checkpoint = None
    gradcam_error = None
    if ckpt_name:
        checkpoint = (model_path.parent / ckpt_name).resolve()
        if not checkpoint.is_file():
            gradcam_error = f"the companion checkpoint named in the sidecar is missing: {checkpoint}"
    state = ServerState(model_path=model_path, predictor=predictor, metadata=metadata,
                        web_assets=find_web_assets(web_assets), max_upload_bytes=max_upload_bytes,
                        max_pixels=max_pixels, checkpoint=checkpoint, gradcam_error=gradcam_error,
                        model_sha256=_sha256(model_path))

    app = FastAPI(title="hypoderm", version=__version__, docs_url=None, redoc_url=None,
                  description="Diagnosis aid for hypopigmented skin diseases. A decision aid, not a diagnosis.")
    app.state.hypoderm = state

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

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _json_error(e.status_code, code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors()]
        return _json_error(422, "invalid_parameter", "; ".join(parts) or "invalid request")

    @app.get("/api/v1/health", tags=["api"], summary="Liveness and model status")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "model_loaded": True,
                "model_name": state.metadata.get("model_name"), "uptime_s": round(time.time() - state.started, 1),
                "predictions": state.predictions, "client_errors": state.client_errors,
                "browser_inference": state.web_assets is not None}

    @app.get("/api/v1/model", tags=["api"], summary="Classes, version, metrics, preprocessing and thresholds")
    def model_info() -> dict[str, Any]:
        return _model_info(state)

    @app.post("/api/v1/predict", tags=["api"], summary="Diagnose one photo (multipart field 'image', or a raw image body)",
              responses={400: {"description": "empty or malformed upload"}, 413: {"description": "too many bytes or pixels"},
                         415: {"description": "not an image / wrong Content-Type"}, 422: {"description": "truncated or corrupt image"}})
    async def predict(request: Request, top_k: int = Query(3, ge=1, le=20),
                      gradcam: bool = Query(False, description="add a Grad-CAM heatmap (needs the companion checkpoint)")
                      ) -> dict[str, Any]:
        data = await _image_bytes(request, state)
        result = await run_in_threadpool(_predict, state, data, top_k, gradcam)
        state.predictions += 1
        return result

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

    @app.get("/vendor/ort/{name}", include_in_schema=False)
    def ort_file(name: str) -> Response:
        if state.web_assets is None or name not in ORT_FILES:
            raise ApiError(404, "not_found", f"no such runtime file: {name}")
        media = "application/wasm" if name.endswith(".wasm") else "text/javascript"
        return FileResponse(state.web_assets / name, media_type=media, headers={"Cache-Control": "no-cache"})

    @app.get("/vendor/swagger/{name}", include_in_schema=False)
    def swagger_file(name: str) -> Response:
        swagger = (state.web_assets.parents[1] / "swagger-ui-dist") if state.web_assets else None
        if swagger is None or name not in SWAGGER_FILES or not (swagger / name).is_file():
            raise ApiError(404, "not_found", f"no such docs file: {name}")
        return FileResponse(swagger / name, headers={"Cache-Control": "no-cache"})

    @app.get("/model/model.onnx", include_in_schema=False)
    def model_file() -> Response:
        return FileResponse(state.model_path, media_type="application/octet-stream",
                            headers={"Cache-Control": "no-cache", "ETag": f'"{state.model_sha256}"'})

    @app.get("/sw.js", include_in_schema=False)
    def service_worker() -> Response:
        return Response(_service_worker(state), media_type="text/javascript",
                        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})

    @app.get("/manifest.webmanifest", include_in_schema=False)
    def manifest() -> Response:
        return FileResponse(STATIC_DIR / "manifest.webmanifest", media_type="application/manifest+json")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index() -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="model.onnx (or its folder) made by `hypoderm export`; default: the bundled model")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--web-assets", default=None,
                        help=f"folder holding onnxruntime-web/dist for in-browser inference (default: ${WEB_ASSETS_ENV} "
                             "or the repository's node_modules)")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
                        help="largest accepted upload in MiB (default 10)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"largest accepted image in pixels (default {DEFAULT_MAX_PIXELS})")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads for server inference")


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        print(f"hypoderm serve: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        print("hypoderm serve: --max-upload-mb and --max-pixels must be positive", file=sys.stderr)
        return 2
    try:
        app = create_app(args.model, web_assets=args.web_assets, max_upload_bytes=int(args.max_upload_mb * 2**20),
                         max_pixels=args.max_pixels, threads=args.threads)
    except ModelLoadError as e:
        print(f"hypoderm serve: error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    state: ServerState = app.state.hypoderm
    if state.web_assets is None:
        print("hypoderm serve: onnxruntime-web not found; the page will use server inference "
              f"(run scripts/install_web_assets.sh or set {WEB_ASSETS_ENV})", file=sys.stderr)
    print(f"hypoderm serve: {state.metadata.get('model_name')} on http://{args.host}:{args.port}/ "
          f"(API docs at /docs). A decision aid, not a diagnosis.", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
