"""How a request is held to the server's limits (hypoderm.app.limits.Limits, in ServerState.limits): the
prediction count (`refuse_if_busy`), the upload slots while a body arrives (`upload_slot`: slow ones per client
address, all of them in total), the upload bytes held (`Budget`), and the body read itself (`read_limited`: its
bytes, deadline and pace). Every refusal is a JSON 4xx/503 (ApiError) and one log line."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from starlette.requests import ClientDisconnect, Request

from hypoderm.app.errors import ApiError
from hypoderm.app.limits import Limits, UploadProgress, log
from hypoderm.app.state import ServerState
from hypoderm.app.upload import UploadError, image_from_multipart

CHECK_EVERY_S = 0.5  # how often an upload that waits for its next bytes checks its deadline and its pace
# A body's chunks (one per wake-up of the request's task) must average at least MIN_CHUNK_BYTES once
# CHUNKS_BEFORE_CHECK have arrived, or the upload gets a JSON 400: each chunk costs the event loop the same
# whatever its size, and 12 clients sending 1-byte chunks left /health unanswered for ~100 s (issue 28). A
# real network delivers whole TCP segments (536 bytes at the least, ~1400 usually), so this refuses only
# deliberate tiny writes; it bounds a body's chunks to max(64, its bytes / 256).
MIN_CHUNK_BYTES = 256
CHUNKS_BEFORE_CHECK = 64
# Release freed memory to the OS after decoding an image of at least this many (declared) pixels.
RELEASE_AFTER_PIXELS = 4_000_000


def peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown client"


class Budget:
    """Upload bytes held by all requests together (ServerState.buffered_bytes), event loop only."""

    def __init__(self, state: ServerState) -> None:
        self.state, self.held = state, 0

    def take(self, n: int) -> None:
        if self.state.buffered_bytes + n > self.state.limits.max_buffered_bytes:
            log.warning("hypoderm serve: refused an upload: %d bytes of uploads already held (limit %d); "
                        "answered 503", self.state.buffered_bytes, self.state.limits.max_buffered_bytes)
            raise ApiError(503, "server_busy", "the server is receiving too many uploads at once; retry in a moment")
        self.state.buffered_bytes += n
        self.held += n

    def release(self) -> None:
        self.state.buffered_bytes -= self.held
        self.held = 0


def refuse_if_busy(state: ServerState, request: Request) -> None:
    """JSON 503 when `limit_concurrency` predictions (uploads that have arrived) are queued or decoding. Health,
    model info and the page are not counted: a probe still answers under a flood."""
    if state.in_flight >= state.limits.limit_concurrency:
        log.warning("hypoderm serve: %s: refused, %d predictions in progress (limit %d); answered 503",
                    peer(request), state.in_flight, state.limits.limit_concurrency)
        raise ApiError(503, "server_busy", f"{state.in_flight} predictions in progress (limit "
                       f"{state.limits.limit_concurrency}); retry in a moment")


def _slow_before(state: ServerState, upload: UploadProgress | None, client: str, now: float) -> int:
    """Slow uploads from `client` that began before `upload` (all of them when it is None)."""
    rate = state.limits.slow_upload_rate
    return sum(1 for u in state.uploads.get(client, ()) if u is not upload and u.is_slow(now, rate)
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
        p, limits = self.progress, self.state.limits
        if not p.is_slow(now, limits.slow_upload_rate):
            return
        older = _slow_before(self.state, p, p.client, now)
        if older >= limits.max_uploads_per_client:
            rate = p.rate(now)
            log.warning("hypoderm serve: %s: upload arriving at %.0f B/s, %d slow uploads from this address "
                        "before it (limit %d); answered 429", peer(self.request), rate, older,
                        limits.max_uploads_per_client)
            raise ApiError(429, "too_many_uploads", f"{older} uploads from {p.client} are arriving slower than "
                           f"{limits.slow_upload_rate / 1024:g} KiB/s (limit {limits.max_uploads_per_client} "
                           f"per client), and this one too ({rate / 1024:.1f} KiB/s); wait for them to finish",
                           close=True)


@contextlib.contextmanager
def upload_slot(state: ServerState, request: Request) -> Iterator[UploadSlot]:
    """Count one upload while its body arrives: JSON 429 when this client address already has
    `max_uploads_per_client` slow uploads arriving (slower than `slow_upload_rate`; fast ones are not capped
    per address), JSON 503 when all clients together have `max_uploads`."""
    client = request.client.host if request.client else "unknown"
    now, limits = time.monotonic(), state.limits
    slow = _slow_before(state, None, client, now) if client in state.uploads else 0
    if slow >= limits.max_uploads_per_client:
        log.warning("hypoderm serve: %s: refused, %d slow uploads from this address still arriving (limit %d); "
                    "answered 429", peer(request), slow, limits.max_uploads_per_client)
        raise ApiError(429, "too_many_uploads", f"{slow} uploads from {client} are arriving slower than "
                       f"{limits.slow_upload_rate / 1024:g} KiB/s (limit {limits.max_uploads_per_client} per client); "
                       "wait for them to finish", close=True)
    arriving = sum(len(v) for v in state.uploads.values())
    if arriving >= limits.max_uploads:
        log.warning("hypoderm serve: %s: refused, %d uploads still arriving (limit %d); answered 503",
                    peer(request), arriving, limits.max_uploads)
        raise ApiError(503, "server_busy", f"{arriving} uploads are arriving (limit {limits.max_uploads}); "
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


async def read_limited(request: Request, limit: int, timeout: float = Limits.body_timeout,
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
    limits = state.limits
    body = await read_limited(request, limits.max_upload_bytes + (16384 if ctype == "multipart/form-data" else 0),
                              limits.body_timeout, budget, slot)
    if ctype != "multipart/form-data":
        return body
    try:
        # In memory: Starlette's parser would spool a part over 1 MiB to a temporary file.
        return image_from_multipart(body, request.headers.get("content-type", ""), limits.max_upload_bytes)
    except UploadError as e:
        raise ApiError(e.status, e.code, e.detail) from None
