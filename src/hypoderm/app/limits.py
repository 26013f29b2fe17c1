"""The server's limits: bytes per upload (refused before they are parsed), uploads still arriving (slow ones per
client address, all of them in total), upload bytes held, predictions in progress, the body deadline, the
smallest average chunk of a body; the uvicorn options for the parser, the header deadline and the connection cap
(hypoderm.app.guard), the proxy headers, and the open-file limit they need.

A stalled upload holds an upload slot, never a prediction slot; every refusal is a JSON 4xx/503 (ApiError)
and one log line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
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
# The per-address cap counts only uploads arriving slower than DEFAULT_SLOW_UPLOAD_BYTES_PER_S on average since
# they began, judged once they have been arriving for SLOW_MIN_AGE_S: the cap exists to stop one address from
# holding the upload slots with stalled or trickling uploads, not to refuse fast ones (50 phones behind one NAT or
# proxy posting 12 MP photos got 154 429s in 10 s, issue 28). A whole-upload average, not a short window: when
# the server itself is busy (50 photos decoding on 2 cores) it reads every body in bursts, and a 2 s window
# without a byte then called fast uploads slow (26 429s in 20 s on a quiet 2-core VM). A fast upload is done
# long before SLOW_MIN_AGE_S. Over the cap the newest slow uploads of that address get a JSON 429, at once or at
# their next check. 32 KiB/s (256 kbit/s) is below any usable mobile link; a 10 MB photo at that rate would miss
# the 60 s body deadline anyway.
DEFAULT_MAX_UPLOADS_PER_CLIENT = 16
DEFAULT_SLOW_UPLOAD_BYTES_PER_S = 32 * 1024
SLOW_MIN_AGE_S = 5.0
CHECK_EVERY_S = 0.5  # how often an upload that waits for its next bytes checks its deadline and its pace
# A body's chunks (one per wake-up of the request's task) must average at least MIN_CHUNK_BYTES once
# CHUNKS_BEFORE_CHECK have arrived, or the upload gets a JSON 400: each chunk costs the event loop the same
# whatever its size, and 12 clients sending 1-byte chunks left /health unanswered for ~100 s (issue 28). A
# real network delivers whole TCP segments (536 bytes at the least, ~1400 usually), so this refuses only
# deliberate tiny writes; it bounds a body's chunks to max(64, its bytes / 256).
MIN_CHUNK_BYTES = 256
CHUNKS_BEFORE_CHECK = 64
DEFAULT_MAX_CONNECTIONS = 512  # open sockets; over it a new connection is closed at once (fd safety)
# Upload bytes held in memory by all requests together; over it new uploads get 503. Without it,
# 512 slow clients each sending 10 MB would hold 5 GB.
DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024
MAX_HEADER_BYTES = 16384  # request line + headers (h11's incomplete-event limit; guard.py's for httptools)
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


class UploadProgress:
    """One upload still arriving from `client`: when it began, its bytes so far, and its pace (event loop only;
    `now` is time.monotonic())."""

    def __init__(self, client: str, now: float) -> None:
        self.client, self.started = client, now
        self.received = 0

    def add(self, n: int) -> None:
        self.received += n

    def rate(self, now: float) -> float:
        """Bytes/s since the upload began; not judged (inf) during its first SLOW_MIN_AGE_S seconds."""
        age = now - self.started
        return float("inf") if age < SLOW_MIN_AGE_S else self.received / age

    def is_slow(self, now: float, min_rate: float) -> bool:
        return self.rate(now) < min_rate


def _slow_before(state: ServerState, upload: UploadProgress | None, client: str, now: float) -> int:
    """Slow uploads from `client` that began before `upload` (all of them when it is None)."""
    return sum(1 for u in state.uploads.get(client, ()) if u is not upload and u.is_slow(now, state.slow_upload_rate)
               and (upload is None or u.started <= upload.started))


class UploadSlot:
    """An upload while its body arrives, counted in ServerState.uploads (see `upload_slot`)."""

    def __init__(self, state: ServerState, request: Request, progress: UploadProgress) -> None:
        self.state, self.request, self.progress = state, request, progress

    def received(self, n: int) -> None:
        self.progress.add(n)

    def check_pace(self) -> None:
        """JSON 429 when this upload is slow and its address already has `max_uploads_per_client` older slow
        uploads arriving (the older ones keep their slots)."""
        now = time.monotonic()
        p = self.progress
        if not p.is_slow(now, self.state.slow_upload_rate):
            return
        older = _slow_before(self.state, p, p.client, now)
        if older >= self.state.max_uploads_per_client:
            rate = p.rate(now)
            log.warning("hypoderm serve: %s: upload arriving at %.0f B/s, %d slow uploads from this address "
                        "before it (limit %d); answered 429", peer(self.request), rate, older,
                        self.state.max_uploads_per_client)
            raise ApiError(429, "too_many_uploads", f"{older} uploads from {p.client} are arriving slower than "
                           f"{self.state.slow_upload_rate / 1024:g} KiB/s (limit {self.state.max_uploads_per_client} "
                           f"per client), and this one too ({rate / 1024:.1f} KiB/s); wait for them to finish",
                           close=True)


@contextlib.contextmanager
def upload_slot(state: ServerState, request: Request) -> Iterator[UploadSlot]:
    """Count one upload while its body arrives: JSON 429 when this client address already has
    `max_uploads_per_client` slow uploads arriving (slower than `slow_upload_rate`; fast ones are not capped
    per address), JSON 503 when all clients together have `max_uploads`."""
    client = request.client.host if request.client else "unknown"
    now = time.monotonic()
    slow = _slow_before(state, None, client, now) if client in state.uploads else 0
    if slow >= state.max_uploads_per_client:
        log.warning("hypoderm serve: %s: refused, %d slow uploads from this address still arriving (limit %d); "
                    "answered 429", peer(request), slow, state.max_uploads_per_client)
        raise ApiError(429, "too_many_uploads", f"{slow} uploads from {client} are arriving slower than "
                       f"{state.slow_upload_rate / 1024:g} KiB/s (limit {state.max_uploads_per_client} per client); "
                       "wait for them to finish", close=True)
    arriving = sum(len(v) for v in state.uploads.values())
    if arriving >= state.max_uploads:
        log.warning("hypoderm serve: %s: refused, %d uploads still arriving (limit %d); answered 503",
                    peer(request), arriving, state.max_uploads)
        raise ApiError(503, "server_busy", f"{arriving} uploads are arriving (limit {state.max_uploads}); "
                       "retry in a moment", close=True)
    progress = UploadProgress(client, now)
    state.uploads.setdefault(client, []).append(progress)
    try:
        yield UploadSlot(state, request, progress)
    finally:
        mine = state.uploads[client]
        mine.remove(progress)
        if not mine:
            del state.uploads[client]


async def read_limited(request: Request, limit: int, timeout: float = DEFAULT_BODY_TIMEOUT_S,
                       budget: Budget | None = None, slot: UploadSlot | None = None) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes (never buffered past it) or
    takes longer than `timeout` seconds to arrive (a stalled upload must not hold memory and a
    connection forever), or when all uploads together would pass the server's `budget`, or when its
    chunks average under MIN_CHUNK_BYTES, or (with `slot`) when it is one slow upload too many from its
    address. A client that leaves mid-upload is logged as one line, not a traceback.

    The body deadline and the pace are checked by a timer every CHECK_EVERY_S (a refusal cancels the read), and
    the deadline after every chunk too; a chunk costs no task or timer of its own."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ApiError(400, "bad_content_length", f"Content-Length is not a number: {declared!r}") from None
        if n > limit:
            raise ApiError(413, "upload_too_large", f"upload too large: {n} bytes > limit {limit} bytes", close=True)
    chunks: list[bytes] = []
    total = n_chunks = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    task = asyncio.current_task()
    refusal: list[ApiError] = []
    timer: asyncio.TimerHandle | None = None

    def timed_out() -> ApiError:
        log.warning("hypoderm serve: %s: upload not complete within %gs (%d bytes received); answered 408",
                    peer(request), timeout, total)
        return ApiError(408, "upload_timeout", f"upload not complete within {timeout:g} s ({total} bytes received)",
                        close=True)

    def tick() -> None:
        """Every CHECK_EVERY_S while the body arrives: the deadline and the pace; a refusal cancels the read."""
        nonlocal timer
        if loop.time() >= deadline:
            refusal.append(timed_out())
        elif slot is not None:
            try:
                slot.check_pace()
            except ApiError as e:
                refusal.append(e)
        if refusal and task is not None:
            task.cancel()
        else:
            timer = loop.call_later(max(0.0, min(CHECK_EVERY_S, deadline - loop.time())), tick)

    timer = loop.call_later(min(CHECK_EVERY_S, timeout), tick)
    try:
        async for chunk in request.stream():
            if not chunk:
                continue
            total += len(chunk)
            n_chunks += 1
            if total > limit:
                raise ApiError(413, "upload_too_large", f"upload too large: more than the limit of {limit} bytes",
                               close=True)
            if n_chunks >= CHUNKS_BEFORE_CHECK and total < MIN_CHUNK_BYTES * n_chunks:
                log.warning("hypoderm serve: %s: upload arriving in %d chunks of %.1f bytes on average (at least %d "
                            "expected); answered 400", peer(request), n_chunks, total / n_chunks, MIN_CHUNK_BYTES)
                raise ApiError(400, "upload_chunks_too_small", f"the upload arrived in {n_chunks} pieces of "
                               f"{total / n_chunks:.1f} bytes on average; the server needs at least {MIN_CHUNK_BYTES} "
                               "bytes per piece (send the body in larger writes)", close=True)
            if loop.time() > deadline:  # checked here too: a busy loop may run the timer late
                raise timed_out()
            if budget is not None:
                budget.take(len(chunk))
            if slot is not None:
                slot.received(len(chunk))
            chunks.append(chunk)
    except asyncio.CancelledError:
        if not refusal:
            raise
        if task is not None and hasattr(task, "uncancel"):  # Python 3.11+: this cancellation is handled here
            task.uncancel()
        raise refusal[0] from None
    except ClientDisconnect:
        log.warning("hypoderm serve: %s: client disconnected during the upload (%d bytes received)",
                    peer(request), total)
        raise ApiError(400, "client_disconnected", "the client disconnected before the upload was complete") from None
    finally:
        if timer is not None:
            timer.cancel()
    return b"".join(chunks)


async def image_bytes(request: Request, state: ServerState, budget: Budget | None = None,
                      slot: UploadSlot | None = None) -> bytes:
    """The uploaded file's bytes, from multipart field `image` (or `file`) or a raw image body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (ctype == "multipart/form-data" or ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise ApiError(415, "unsupported_content_type",
                       f"unsupported Content-Type {ctype or '(none)'!r}: send multipart/form-data with the photo "
                       "in field 'image', or the photo itself as the body (image/* or application/octet-stream)")
    # Multipart framing adds a few hundred bytes; allow for it so the limit applies to the photo.
    body = await read_limited(request, state.max_upload_bytes + (16384 if ctype == "multipart/form-data" else 0),
                              state.body_timeout, budget, slot)
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
    max_connections, forwarded_allow_ips: the `hypoderm serve` options; kept apart so tests can check them).

    The parser is httptools when it is installed (a project dependency), h11 otherwise (hypoderm.app.guard).
    Proxy headers (X-Forwarded-For, which then gives the client address the per-address cap counts) are
    believed only from the addresses in `forwarded_allow_ips`; none by default (uvicorn believes 127.0.0.1's)."""
    from hypoderm.app.guard import guarded_protocol

    forwarded = getattr(args, "forwarded_allow_ips", None)
    return {"http": guarded_protocol(args.header_timeout, args.max_connections, MAX_HEADER_BYTES),
            # The app limits predictions itself (JSON 503, health exempt); uvicorn's own plain-text 503 is
            # only a backstop. Connections over the cap still count until their close completes (up to
            # two accept bursts), so the backstop sits above that.
            "timeout_keep_alive": args.keep_alive_timeout,
            "limit_concurrency": args.max_connections + 2 * ACCEPT_BACKLOG + 1,
            "h11_max_incomplete_event_size": MAX_HEADER_BYTES, "backlog": ACCEPT_BACKLOG, "server_header": False,
            "proxy_headers": bool(forwarded), "forwarded_allow_ips": forwarded or None,
            "log_level": "warning"}
