"""The server's limits: bytes per upload (refused before they are parsed), uploads still arriving (per client
address and in total), upload bytes held, predictions in progress, the body deadline; the uvicorn options for
the header deadline and the connection cap (hypoderm.app.guard), and the open-file limit they need.

A stalled upload holds an upload slot, never a prediction slot; every refusal is a JSON 4xx/503 (ApiError)
and one log line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request

from hypoderm.app.errors import ApiError
from hypoderm.app.upload import UploadError, image_from_multipart

if TYPE_CHECKING:
    from hypoderm.app.state import ServerState

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


def peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown client"


class Budget:
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


def refuse_if_busy(state: ServerState, request: Request) -> None:
    """JSON 503 when `limit_concurrency` predictions (uploads that have arrived) are queued or decoding. Health,
    model info and the page are not counted: a probe still answers under a flood."""
    if state.in_flight >= state.limit_concurrency:
        log.warning("hypoderm serve: %s: refused, %d predictions in progress (limit %d); answered 503",
                    peer(request), state.in_flight, state.limit_concurrency)
        raise ApiError(503, "server_busy", f"{state.in_flight} predictions in progress (limit "
                       f"{state.limit_concurrency}); retry in a moment")


@contextlib.contextmanager
def upload_slot(state: ServerState, request: Request) -> Iterator[None]:
    """Count one upload while its body arrives: JSON 429 when this client address already has
    `max_uploads_per_client` uploads arriving, JSON 503 when all clients together have `max_uploads`."""
    client = request.client.host if request.client else "unknown"
    if state.uploads[client] >= state.max_uploads_per_client:
        log.warning("hypoderm serve: %s: refused, %d uploads from this address still arriving (limit %d); "
                    "answered 429", peer(request), state.uploads[client], state.max_uploads_per_client)
        raise ApiError(429, "too_many_uploads", f"{state.uploads[client]} uploads from {client} are still arriving "
                       f"(limit {state.max_uploads_per_client} per client); wait for them to finish")
    if sum(state.uploads.values()) >= state.max_uploads:
        log.warning("hypoderm serve: %s: refused, %d uploads still arriving (limit %d); answered 503",
                    peer(request), sum(state.uploads.values()), state.max_uploads)
        raise ApiError(503, "server_busy", f"{sum(state.uploads.values())} uploads are arriving (limit "
                       f"{state.max_uploads}); retry in a moment")
    state.uploads[client] += 1
    try:
        yield
    finally:
        state.uploads[client] -= 1
        if not state.uploads[client]:
            del state.uploads[client]


async def read_limited(request: Request, limit: int, timeout: float = DEFAULT_BODY_TIMEOUT_S,
                       budget: Budget | None = None) -> bytes:
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
                    peer(request), timeout, total)
        raise ApiError(408, "upload_timeout", f"upload not complete within {timeout:g} s ({total} bytes received)"
                       ) from None
    except ClientDisconnect:
        log.warning("hypoderm serve: %s: client disconnected during the upload (%d bytes received)",
                    peer(request), total)
        raise ApiError(400, "client_disconnected", "the client disconnected before the upload was complete") from None
    return b"".join(chunks)


async def image_bytes(request: Request, state: ServerState, budget: Budget | None = None) -> bytes:
    """The uploaded file's bytes, from multipart field `image` (or `file`) or a raw image body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (ctype == "multipart/form-data" or ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise ApiError(415, "unsupported_content_type",
                       f"unsupported Content-Type {ctype or '(none)'!r}: send multipart/form-data with the photo "
                       "in field 'image', or the photo itself as the body (image/* or application/octet-stream)")
    # Multipart framing adds a few hundred bytes; allow for it so the limit applies to the photo.
    body = await read_limited(request, state.max_upload_bytes + (16384 if ctype == "multipart/form-data" else 0),
                              state.body_timeout, budget)
    if ctype != "multipart/form-data":
        return body
    try:
        # In memory: Starlette's parser would spool a part over 1 MiB to a temporary file.
        return image_from_multipart(body, request.headers.get("content-type", ""), state.max_upload_bytes)
    except UploadError as e:
        raise ApiError(e.status, e.code, e.detail) from None


def fit_open_file_limit(max_connections: int) -> int:
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


def uvicorn_options(args: Any) -> dict[str, Any]:
    """uvicorn.run keyword arguments for the limits of `args` (header_timeout, keep_alive_timeout,
    max_connections: the `hypoderm serve` options; kept apart so tests can check them)."""
    from hypoderm.app.guard import guarded_protocol

    return {"http": guarded_protocol(args.header_timeout, args.max_connections),
            # The app limits predictions itself (JSON 503, health exempt); uvicorn's own plain-text 503 is
            # only a backstop. Connections over the cap still count until their close completes (up to
            # two accept bursts), so the backstop sits above that.
            "timeout_keep_alive": args.keep_alive_timeout,
            "limit_concurrency": args.max_connections + 2 * ACCEPT_BACKLOG + 1,
            "h11_max_incomplete_event_size": MAX_HEADER_BYTES, "backlog": ACCEPT_BACKLOG, "server_header": False,
            "log_level": "warning"}
