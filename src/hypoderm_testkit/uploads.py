"""Uploads written by hand on a raw socket, for the tests and benchmarks of what a client's pace may cost the
server (tests/app/test_slow_clients.py, benchmarks/robustness/server_round_three.py): open a POST to
/api/v1/predict from a chosen loopback address, then send its body at whatever pace the caller likes."""

from __future__ import annotations

import socket


def open_upload(port: int, source: str, length: int, ctype: str = "image/jpeg", close: bool = True) -> socket.socket:
    """A non-blocking socket from `source` (a 127.0.0.x address) to 127.0.0.1:`port` that has sent the headers of a
    raw-body POST /api/v1/predict of `length` bytes (with `Connection: close` when `close`), and no byte of the
    body yet. An OSError while connecting is raised, the socket closed."""
    sock = socket.socket()
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        headers = f"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n"
        sock.sendall((headers + ("Connection: close\r\n" if close else "") + "\r\n").encode())
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def answered(sock: socket.socket) -> bool:
    """Whether the server has written to (or closed) `sock`, without waiting."""
    try:
        sock.recv(1, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    return True


def read_answer(sock: socket.socket, wait_s: float = 30) -> bytes:
    """What the server wrote on `sock` until it closed it (or `wait_s` passed, or the connection failed)."""
    sock.setblocking(True)
    sock.settimeout(wait_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:  # reset, timed out
        pass
    return data
