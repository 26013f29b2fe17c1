"""Connection-level limits uvicorn lacks: a deadline for a request's headers, a bound on their size and a hard
cap on open connections, each rejection logged as one line (never a traceback); and `release_memory`, which
hands freed decode buffers back to the OS.

uvicorn's `timeout_keep_alive` closes an idle connection, but a client that sends one byte of a
request line cancels that timer and can then hold the connection forever (slowloris); and
`limit_concurrency` answers 503 only once a request's headers have arrived, so stalled clients still
pile up open sockets until the process runs out of file descriptors. The guarded protocols close a
connection whose headers are not complete `header_timeout` seconds after it opened (or after its
previous response), and close at once a connection over `max_connections`.

Two parsers: httptools (C, what `guarded_protocol` picks when it is installed: the project depends on it) and
h11 (pure Python, the fallback). h11 costs ~13 us of server CPU per received chunk, so a client that sends its
upload one byte at a time kept the event loop busy for a second per 88 KB (issue 28). uvicorn bounds h11's
header size (`h11_max_incomplete_event_size`) but not httptools': `GuardedHttpToolsProtocol` answers 400 and
closes a connection whose request line and headers pass `max_header_bytes`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: the h11 fallback
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

log = logging.getLogger("hypoderm.serve")


def _peer(protocol: Any) -> str:
    client = protocol.client
    return f"{client[0]}:{client[1]}" if client else "unknown client"


class _Guard:
    """The header deadline and the connection cap, over either of uvicorn's HTTP/1.1 protocols (a mixin:
    the protocol class comes after it). Subclasses say when a request's headers are in (`_headers_in`)."""

    header_timeout: float = 10.0
    max_connections: int = 1000
    max_header_bytes: int = 16384
    # set by the protocol class this mixes into
    connections: set[Any]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _headers_in(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
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

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request on this keep-alive connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _header_timeout_expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._headers_in():
            return
        log.warning("hypoderm serve: closed connection from %s: request headers not complete within %gs",
                    _peer(self), self.header_timeout)
        self.transport.close()


class GuardedH11Protocol(_Guard, H11Protocol):
    """uvicorn's h11 protocol plus a header deadline and a connection cap (class attributes, set by
    `guarded_protocol`); uvicorn's `h11_max_incomplete_event_size` bounds the headers."""

    def _headers_in(self) -> bool:
        return self.conn.their_state is not h11.IDLE

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._headers_in():  # the request line and headers are in
            self._cancel_header_timer()


if HttpToolsProtocol is not None:
    class GuardedHttpToolsProtocol(_Guard, HttpToolsProtocol):
        """uvicorn's httptools protocol plus a header deadline, a header size limit (400) and a connection cap."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._awaiting_headers = True  # from the connection (or the last response) to a request's headers
            self._header_bytes = 0  # received while awaiting headers

        def _headers_in(self) -> bool:
            return not self._awaiting_headers

        def _arm_header_timer(self) -> None:
            super()._arm_header_timer()
            self._awaiting_headers, self._header_bytes = True, 0

        def data_received(self, data: bytes) -> None:
            if self._awaiting_headers:
                self._header_bytes += len(data)
            super().data_received(data)
            if self._awaiting_headers and self._header_bytes > self.max_header_bytes \
                    and not self.transport.is_closing():
                log.warning("hypoderm serve: refused a request from %s: request line and headers over %d bytes; "
                            "answered 400", _peer(self), self.max_header_bytes)
                self._cancel_header_timer()
                self.send_400_response("Request line and headers too large.")

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            self._cancel_header_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.cycle is not None and not self.cycle.response_complete:  # a pipelined request has started
                self._cancel_header_timer()
                self._awaiting_headers = False

else:
    GuardedHttpToolsProtocol = None  # type: ignore[assignment,misc]


def guarded_protocol(header_timeout: float, max_connections: int, max_header_bytes: int = 16384,
                     parser: str = "auto") -> type[_Guard]:
    """A guarded protocol class with these limits (uvicorn takes a protocol class, not an instance): httptools
    when it is installed (`parser` "auto" or "httptools"), else h11 ("h11" asks for it explicitly)."""
    if parser not in ("auto", "httptools", "h11"):
        raise ValueError(f"parser must be auto, httptools or h11, got {parser!r}")
    if parser == "httptools" and GuardedHttpToolsProtocol is None:
        raise ImportError("httptools is not installed (pip install httptools)")
    base: type[_Guard] = GuardedH11Protocol if parser == "h11" or GuardedHttpToolsProtocol is None \
        else GuardedHttpToolsProtocol
    return type(base.__name__, (base,), {"header_timeout": float(header_timeout),
                                         "max_connections": int(max_connections),
                                         "max_header_bytes": int(max_header_bytes)})


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
