"""The web app and what it needs: the page and its static files, onnxruntime-web and the model (content-hashed
immutable URLs beside revalidated fixed ones: hypoderm.app.assets), the service worker (its cache name and
precache list filled in), and the API docs (Swagger UI, when installed with the web assets)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from hypoderm import __version__
from hypoderm.app.api import State
from hypoderm.app.assets import IMMUTABLE, REVALIDATE, Delivery
from hypoderm.app.errors import DOCS_CSP, ApiError
from hypoderm.app.state import STATIC_DIR, ServerState, ort_web_version
from hypoderm.app.web_runtime import ORT_FILES
from hypoderm.cards import TEXT_DIR

SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")

router = APIRouter(include_in_schema=False)


def get_delivery(state: State) -> Delivery:
    return state.get_delivery()


Delivered = Annotated[Delivery, Depends(get_delivery)]


def _swagger_dir(state: ServerState) -> Path | None:
    return (state.web_assets.parents[1] / "swagger-ui-dist") if state.web_assets else None


@router.get("/openapi-docs")
@router.get("/docs")
def docs(state: State) -> Response:
    swagger = _swagger_dir(state)
    if swagger is None or not all((swagger / f).is_file() for f in SWAGGER_FILES):
        html = ("<!doctype html><title>hypoderm API</title><p>The OpenAPI schema is at "
                "<a href='/openapi.json'>/openapi.json</a> (install the web assets for the interactive docs).")
        return HTMLResponse(html)
    html = ("<!doctype html><html><head><meta charset='utf-8'><title>hypoderm API</title>"
            "<link rel='stylesheet' href='/vendor/swagger/swagger-ui.css'></head><body><div id='swagger-ui'></div>"
            "<script src='/vendor/swagger/swagger-ui-bundle.js'></script><script src='/static/js/docs.js'></script>"
            "</body></html>")
    return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_CSP})


@router.api_route("/vendor/ort/{name}", methods=["GET", "HEAD"])
def ort_file(request: Request, name: str, delivery: Delivered) -> Response:
    # The fixed URL (revalidated); the page uses the content-hashed one below.
    if name not in delivery.ort:
        raise ApiError(404, "not_found", f"no such runtime file: {name}")
    return delivery.store.response(delivery.ort[name], request, REVALIDATE)


@router.api_route("/vendor/ort/{version}/{name}", methods=["GET", "HEAD"])
def ort_file_hashed(request: Request, version: str, name: str, delivery: Delivered
                    ) -> Response:
    if name not in delivery.ort or version != delivery.ort_hash:
        raise ApiError(404, "not_found", f"no such runtime file: {version}/{name} (this server has "
                       f"{delivery.ort_base or 'no runtime'})")
    return delivery.store.response(delivery.ort[name], request, IMMUTABLE)


@router.get("/vendor/swagger/{name}")
def swagger_file(name: str, state: State) -> Response:
    swagger = _swagger_dir(state)
    if swagger is None or name not in SWAGGER_FILES or not (swagger / name).is_file():
        raise ApiError(404, "not_found", f"no such docs file: {name}")
    return FileResponse(swagger / name, headers={"Cache-Control": "no-cache"})


@router.api_route("/model/model.onnx", methods=["GET", "HEAD"])
def model_file(request: Request, delivery: Delivered) -> Response:
    return delivery.store.response(delivery.model, request, REVALIDATE)


@router.api_route("/model/{version}/model.onnx", methods=["GET", "HEAD"])
def model_file_hashed(request: Request, version: str, delivery: Delivered) -> Response:
    # Only the current model's hash: an old page asking for an old model gets a clear 404, never
    # other bytes under a URL that caches forever.
    if version != delivery.model.sha256[:16]:
        raise ApiError(404, "not_found", f"no model {version} on this server (it serves {delivery.model_url})")
    return delivery.store.response(delivery.model, request, IMMUTABLE)


@router.get("/sw.js")
def service_worker_file(state: State) -> Response:
    return Response(service_worker(state), media_type="text/javascript",
                    headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})


@router.api_route("/manifest.webmanifest", methods=["GET", "HEAD"])
def manifest(request: Request, delivery: Delivered) -> Response:
    return delivery.store.response(delivery.static["manifest.webmanifest"], request, REVALIDATE)


@router.api_route("/", methods=["GET", "HEAD"])
def index(request: Request, delivery: Delivered) -> Response:
    return delivery.store.response(delivery.static["index.html"], request, REVALIDATE)


@router.api_route("/static/{name:path}", methods=["GET", "HEAD"])
def static_file(request: Request, name: str, delivery: Delivered) -> Response:
    # Only the files found at startup: a fixed list, so no path can leave the folder.
    if name not in delivery.static:
        raise ApiError(404, "not_found", f"no such static file: {name}")
    return delivery.store.response(delivery.static[name], request, REVALIDATE)


def service_worker(state: ServerState) -> str:
    """sw.js with the cache name (app version + model hash) and the files to precache filled in."""
    delivery = state.get_delivery()
    files = ["/", "/manifest.webmanifest", "/api/v1/model", delivery.model_url]
    files += sorted(f"/static/{name}" for name in delivery.static)
    if delivery.ort_base is not None:
        files += [f"{delivery.ort_base}{f}" for f in ORT_FILES]
    text = (STATIC_DIR / "sw.js").read_text(encoding="utf-8")
    shell = hashlib.sha256()
    for p in [*sorted(STATIC_DIR.rglob("*")), *sorted(TEXT_DIR.glob("*.json"))]:
        if p.is_file():
            shell.update(p.read_bytes())
    cache = (f"hypoderm-{__version__}-{shell.hexdigest()[:8]}-{state.model_sha256[:8]}-"
             f"{ort_web_version(state.web_assets) or 'noort'}")
    return text.replace("__HYPODERM_CACHE__", cache).replace("__HYPODERM_PRECACHE__", json.dumps(files))
