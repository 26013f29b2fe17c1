"""Every answer's security headers, and every error, expected or not, as JSON `{"error", "detail", "status"}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

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


class ApiError(Exception):
    """A client error answered as JSON: {"error": code, "detail": message}. `close`: the answer closes the
    connection (an upload refused before its body has arrived: the rest of it is not read)."""

    def __init__(self, status: int, code: str, detail: str, close: bool = False) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.close = status, code, detail, close


def json_error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, "status": status}, status_code=status)


def add_error_handling(app: FastAPI) -> None:
    """Security headers on every response; every error, expected or not, as JSON; 4xx/5xx answers of /api/
    counted in the app's `state.hypoderm.client_errors`."""
    def count_error(request: Request) -> None:
        if request.url.path.startswith("/api/"):
            request.app.state.hypoderm.client_errors += 1

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        response.headers.setdefault("Content-Security-Policy", CSP)
        if response.status_code >= 400:
            count_error(request)
        return response

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        response = json_error(e.status, e.code, e.detail)
        if e.close:
            response.headers["Connection"] = "close"
        return response

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        # Starlette runs this handler outside the middleware stack, so the security headers are added
        # here; the exception is then re-raised by Starlette and logged by uvicorn with its traceback.
        count_error(request)
        response = json_error(500, "internal_error", f"internal server error ({type(e).__name__}); "
                              "the request was not processed")
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = CSP
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return json_error(e.status_code, code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors()]
        return json_error(422, "invalid_parameter", "; ".join(parts) or "invalid request")
