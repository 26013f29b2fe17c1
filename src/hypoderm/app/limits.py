"""The server's limits (`Limits`: one frozen value, what `hypoderm serve`'s options set and `create_app` and
`serve` take): bytes per upload, pixels per photo, photos decoded at once, uploads still arriving (slow ones per
client address, all of them in total), upload bytes held, predictions in progress, the body and header deadlines,
the connection cap; the uvicorn options for them (hypoderm.app.guard), the proxy headers, and the open-file limit
they need. How a request is held to them: hypoderm.app.admission.

A stalled upload holds an upload slot, never a prediction slot; every refusal is a JSON 4xx/503 (ApiError)
and one log line."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

# ONNX Runtime threads per prediction. The server runs up to max_decodes predictions at once, one
# thread each; more intra-op threads only spin-wait for each other (measured on 12 MP JPEGs, 2 cores:
# 44 ms of server CPU per request with ORT's default, 31 ms with 1; benchmarks/app/README.md).
DEFAULT_SERVER_THREADS = 1
# An upload's pace is judged once it has been arriving this long (Limits.slow_upload_rate).
SLOW_MIN_AGE_S = 5.0
MAX_HEADER_BYTES = 16384  # request line + headers (h11's incomplete-event limit; guard.py's for httptools)
# Connections accepted in one burst (asyncio accepts up to `backlog` at once before any of them is
# seen by the connection cap; uvicorn's 2048 let a flood exhaust 1024 file descriptors in one burst).
ACCEPT_BACKLOG = 128

log = logging.getLogger("hypoderm.serve")


@dataclass(frozen=True)
class Limits:
    """Everything `hypoderm serve` bounds, with its defaults (the command's options show them). Raises
    ValueError for a value no server can run with."""

    max_upload_bytes: int = 10 * 1024 * 1024
    """Largest accepted upload, in bytes (refused before it is parsed); a 12 MP phone JPEG is 3-6 MB."""
    max_pixels: int = 40_000_000
    """Largest accepted photo, in pixels (refused from its header, before decoding): above any phone camera in
    common use; bounds decode memory."""
    max_decodes: int = 2
    """Photos decoded at once. Decode memory is this times the worst accepted image (a 40 MP PNG, TIFF or WebP at
    the limit: ~0.17 GB while it is decoded and reduced), whatever the number of clients; 2 for a small server
    (set it to the server's cores)."""
    body_timeout: float = 60.0
    """Seconds to receive an upload; slower gets a JSON 408. A 10 MB upload at 1.5 Mbit/s (a slow mobile link)
    takes ~55 s."""
    header_timeout: float = 10.0
    """Seconds to receive a request line and its headers (a few hundred bytes; hypoderm.app.guard)."""
    keep_alive_timeout: float = 5.0
    """Seconds an idle keep-alive connection stays open (uvicorn's default)."""
    limit_concurrency: int = 128
    """Predictions whose upload has arrived (queued or decoding) before new ones get a JSON 503; health and the
    page still answer."""
    max_uploads: int = 256
    """Uploads still arriving, all clients together, before new ones get a JSON 503. Uploads are counted apart
    from predictions so that stalled clients cannot hold the prediction slots (128 connections each sending 1 KB
    of a declared 5 MB body made every real prediction a 503 for a minute); the body deadline, the buffered-bytes
    budget and the connection cap bound them further."""
    max_uploads_per_client: int = 16
    """Slow uploads (see `slow_upload_rate`) still arriving from one client address before its newest slow ones
    get a JSON 429 (at once or at their next check); fast uploads are not capped per address. The cap exists to
    stop one address from holding the upload slots with stalled or trickling uploads, not to refuse fast ones
    (50 phones behind one NAT or proxy posting 12 MP photos got 154 429s in 10 s, issue 28)."""
    slow_upload_rate: float = 32 * 1024
    """Bytes/s under which an arriving upload counts as slow: its average since it began, judged once it has been
    arriving for SLOW_MIN_AGE_S. A whole-upload average, not a short window: when the server itself is busy (50
    photos decoding on 2 cores) it reads every body in bursts, and a 2 s window without a byte then called fast
    uploads slow (26 429s in 20 s on a quiet 2-core VM); a fast upload is done long before SLOW_MIN_AGE_S.
    32 KiB/s (256 kbit/s) is below any usable mobile link; a 10 MB photo at that rate would miss the 60 s body
    deadline anyway. 0: no upload counts as slow."""
    max_buffered_bytes: int = 256 * 1024 * 1024
    """Upload bytes held in memory by all requests together before new uploads get a JSON 503 (at least
    `max_upload_bytes`). Without it, 512 slow clients each sending 10 MB would hold 5 GB."""
    max_connections: int = 512
    """Open connections before new ones are closed at once (file-descriptor safety; `serve` lowers it to fit the
    open-file limit)."""
    forwarded_allow_ips: str | None = None
    """Comma-separated addresses of the reverse proxy (or *) whose X-Forwarded-For header gives the client's
    address (which the per-address cap counts); None: every such header is ignored (uvicorn would believe
    127.0.0.1's)."""

    def __post_init__(self) -> None:
        counts = (self.max_decodes, self.limit_concurrency, self.max_uploads, self.max_uploads_per_client,
                  self.max_connections, self.max_upload_bytes, self.max_pixels)
        deadlines = (self.body_timeout, self.header_timeout, self.keep_alive_timeout)
        if min(counts) < 1 or not min(deadlines) > 0 or self.max_buffered_bytes < self.max_upload_bytes \
                or not self.slow_upload_rate >= 0:
            raise ValueError("max_decodes, limit_concurrency, max_uploads, max_uploads_per_client, max_connections, "
                             "max_upload_bytes and max_pixels must be >= 1, the timeouts > 0, slow_upload_rate >= 0 "
                             "and max_buffered_bytes >= max_upload_bytes")


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


def uvicorn_options(limits: Limits) -> dict[str, Any]:
    """uvicorn.run keyword arguments for `limits` (header_timeout, keep_alive_timeout, max_connections,
    forwarded_allow_ips; kept apart so tests can check them).

    The parser is httptools when it is installed (a project dependency), h11 otherwise (hypoderm.app.guard).
    Proxy headers (X-Forwarded-For, which then gives the client address the per-address cap counts) are
    believed only from the addresses in `forwarded_allow_ips`; none by default (uvicorn believes 127.0.0.1's)."""
    from hypoderm.app.guard import guarded_protocol

    forwarded = limits.forwarded_allow_ips
    return {"http": guarded_protocol(limits.header_timeout, limits.max_connections, MAX_HEADER_BYTES),
            # The app limits predictions itself (JSON 503, health exempt); uvicorn's own plain-text 503 is
            # only a backstop. Connections over the cap still count until their close completes (up to
            # two accept bursts), so the backstop sits above that.
            "timeout_keep_alive": limits.keep_alive_timeout,
            "limit_concurrency": limits.max_connections + 2 * ACCEPT_BACKLOG + 1,
            "h11_max_incomplete_event_size": MAX_HEADER_BYTES, "backlog": ACCEPT_BACKLOG, "server_header": False,
            "proxy_headers": bool(forwarded), "forwarded_allow_ips": forwarded or None,
            "log_level": "warning"}
