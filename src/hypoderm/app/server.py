"""`hypoderm serve`: the mobile diagnosis web app and its JSON API (FastAPI + uvicorn); `create_app` builds
the app for one model, `serve` runs it. (The command's options: hypoderm.commands.serve.)

The page runs the model in the browser (onnxruntime-web, WASM); the server also predicts, as a fallback or by
choice. Grad-CAM comes from the exported model's own outputs (features and cam_weights,
hypoderm.inference.explain), in numpy here and in JavaScript in the page; the server never imports torch.

The app, one module per job:

    state.py   ServerState (model, metadata, limits, counters); where the model, the page and the runtime are
    api.py     /api/v1: health, model, predict (APIRouter; the answers' Pydantic models for /docs)
    pages.py   the page, its static files, runtime, model and service worker; the API docs
    limits.py  Limits: bytes, pixels, decodes, uploads (per client, in total), bytes held, deadlines, connections;
               the uvicorn options for them
    admission.py  how a request is held to them (upload slots, bytes budget, the body read)
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
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from hypoderm import __version__
from hypoderm.app import api, pages
from hypoderm.app.assets import Delivery, sha256_file
from hypoderm.app.errors import CSP, SECURITY_HEADERS, ApiError, add_error_handling
from hypoderm.app.limits import Limits, fit_open_file_limit, log, uvicorn_options
from hypoderm.app.state import (
    REPO_NODE_MODULES,
    STATIC_DIR,
    WEB_ASSETS_ENV,
    ServerState,
    find_web_assets,
)
from hypoderm.app.web_runtime import ORT_FILES
from hypoderm.errors import UsageError
from hypoderm.inference import ModelLoadError
from hypoderm.inference.model_path import resolve_model_path

__all__ = ["CSP", "ORT_FILES", "REPO_NODE_MODULES", "SECURITY_HEADERS", "STATIC_DIR", "WEB_ASSETS_ENV", "ApiError",
           "Limits", "ModelLoadError", "ServerState", "create_app", "find_web_assets", "serve"]


def _load_predictor(model_path: Path, threads: int | None) -> Any:
    from hypoderm.inference import OnnxPredictor

    return OnnxPredictor(model_path, threads=threads)


def create_app(model: str | os.PathLike[str] | None = None, *, limits: Limits | None = None,
               web_assets: str | os.PathLike[str] | None = None, threads: int | None = None,
               cache_dir: Path | None = None) -> FastAPI:
    """The app for one model, held to `limits` (default: Limits()). Raises ModelLoadError when the model cannot
    be used. `threads`: ONNX Runtime threads per prediction. `cache_dir` holds the precompressed runtime and model
    (default: hypoderm.app.assets.default_cache_dir())."""
    model_path = resolve_model_path(model)
    try:
        predictor = _load_predictor(model_path, threads)
    except Exception as e:  # noqa: BLE001 - report any loader failure as a model problem, without a traceback
        raise ModelLoadError(f"cannot load model {model_path}: {e}") from e
    metadata = dict(predictor.metadata)
    state = ServerState(model_path=model_path, predictor=predictor, metadata=metadata,
                        web_assets=find_web_assets(web_assets), limits=limits or Limits(),
                        model_sha256=sha256_file(model_path))
    state.delivery = Delivery.build(model_path, STATIC_DIR, state.web_assets, ORT_FILES, cache_dir)

    app = FastAPI(title="hypoderm", version=__version__, docs_url=None, redoc_url=None,
                  description="Diagnosis aid for hypopigmented skin diseases. A decision aid, not a diagnosis.")
    app.state.hypoderm = state
    add_error_handling(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    return app


def check_can_listen(host: str, port: int) -> None:
    """A UsageError, in words, when the server could not listen on host:port (the port taken by another server,
    an address this machine does not have), found before the server says where it runs: uvicorn would print its
    own error and the command would exit as if hypoderm had crashed. The socket is closed again at once (with
    SO_REUSEADDR, as uvicorn binds it)."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: not an address of this machine ({e.strerror})") from e
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is already in use (another server?); stop it or choose "
                                 "another port with --port") from e
            if e.errno == errno.EACCES:
                raise UsageError(f"port {port} needs administrator rights on this machine; choose one above 1023 "
                                 "with --port") from e
            raise UsageError(f"cannot listen on {host}:{port} ({e.strerror or e})") from e


def serve(app: FastAPI, host: str, port: int, limits: Limits | None = None) -> None:
    """Run `app` with uvicorn until it is stopped, under `limits` (default: the app's own, given to create_app):
    the header deadline, keep-alive, connection cap (lowered to fit the open-file limit) and proxy addresses."""
    import uvicorn

    if not log.handlers:  # one plain line per rejected client on stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    state: ServerState = app.state.hypoderm
    limits = limits or state.limits
    limits = replace(limits, max_connections=fit_open_file_limit(limits.max_connections))
    if state.delivery is not None:  # compressed before listening: the first phone gets brotli, not gzip
        t0 = time.perf_counter()
        state.delivery.prepare()
        print(f"hypoderm serve: runtime and model compressed for phones in {time.perf_counter() - t0:.1f} s "
              f"(brotli and gzip; kept for the next start in {state.delivery.store.where})",
              file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, **uvicorn_options(limits))
