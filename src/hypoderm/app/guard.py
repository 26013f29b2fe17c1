"""Connection-level limits uvicorn lacks: a deadline for a request's headers and a hard cap on open
connections, each rejection logged as one line (never a traceback); and `release_memory`, which
hands freed decode buffers back to the OS.

uvicorn's `timeout_keep_alive` closes an idle connection, but a client that sends one byte of a
request line cancels that timer and can then hold the connection forever (slowloris); and
`limit_concurrency` answers 503 only once a request's headers have arrived, so stalled clients still
pile up open sockets until the process runs out of file descriptors. `GuardedH11Protocol` closes a
connection whose headers are not complete `header_timeout` seconds after it opened (or after its
previous response), and closes at once a connection over `max_connections`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("hypoderm.serve")


def _peer(protocol: H11Protocol) -> str:
    client = protocol.client
    return f"{client[0]}:{client[1]}" if client else "unknown client"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a header deadline and a connection cap (class attributes, set by
    `guarded_protocol`)."""

    header_timeout: float = 10.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("hypoderm serve: refused connection from %s: %d connections open (limit %d)",
                        _peer(self), len(self.connections), self.max_connections)
            self.transport.close()
            return
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout_expired)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request on this keep-alive connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _header_timeout_expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        log.warning("hypoderm serve: closed connection from %s: request headers not complete within %gs",
                    _peer(self), self.header_timeout)
        self.transport.close()


def guarded_protocol(header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A GuardedH11Protocol subclass with these limits (uvicorn takes a protocol class, not an instance)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout": float(header_timeout), "max_connections": int(max_connections)})


_libc: Any = None


def release_memory() -> None:
    """Return freed heap memory to the OS (glibc `malloc_trim`); a no-op elsewhere.

    A decoded photo's buffers are freed after each request, but glibc keeps freed memory in its
    per-thread arenas, so a server that once decoded a few large images stays at its peak RSS.
    Called after large decodes only (it walks the heap: ~1 ms)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
            if _libc and not hasattr(_libc, "malloc_trim"):
                _libc = False
        except OSError:
            _libc = False
    if _libc:
        _libc.malloc_trim(0)
