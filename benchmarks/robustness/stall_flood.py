"""Issue 13 item 3 and issue 23 item 3 reproduced: `hypoderm serve` under an open-file limit of 1024
receives N stalled clients at once (half send half a request header and stop, half send a predict
request's headers and 1 KB of a declared 5 MB body and stop; `--body-only`: all of them stall in the
body), from `--sources` loopback addresses (127.0.0.2, 127.0.0.3, ...), while a prober asks
/api/v1/health every 0.5 s and a real user at 127.0.0.1 sends a small photo every `--real-every` s.
Reports health answers and failures, their worst latency and the statuses they gave (ok / busy), the
real user's answers by status and their worst latency, how many stalled connections the server closed
or answered (header deadline, body deadline, connection cap, upload limits), and the server log's size,
lines and tracebacks. Prints one JSON document and writes it to --out.

    nice -n 10 .venv/bin/python benchmarks/robustness/stall_flood.py --stalled 1100 --seconds 75
    nice -n 10 .venv/bin/python benchmarks/robustness/stall_flood.py --stalled 128 --body-only --seconds 75 \
        --out benchmarks/robustness/results/stall_body_flood.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "app"))
from common import free_port  # noqa: E402

from hypoderm.inference import bundled_model  # noqa: E402


def _photo() -> bytes:
    """A small skin-toned photo (PNG), what a real user sends."""
    import io

    rng = np.random.default_rng(0)
    arr = np.clip(np.array([205, 150, 120]) + rng.normal(0, 8, (480, 640, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stalled", type=int, default=1100)
    ap.add_argument("--seconds", type=float, default=75, help="how long to probe (body deadline is 60 s)")
    ap.add_argument("--body-only", action="store_true", help="every stalled client stalls in the body")
    ap.add_argument("--sources", type=int, default=1, help="loopback addresses the stalled clients come from")
    ap.add_argument("--real-every", type=float, default=1.0, help="seconds between the real user's photos")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "stall_flood.json")
    ap.add_argument("serve_args", nargs="*", help="extra `hypoderm serve` options (after --)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.stalled + 512)), hard))
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        port = free_port()
        # The server keeps the 1024 limit (its own lift stops at the hard limit, 1024 here).
        cmd = [sys.executable, "-m", "hypoderm.cli", "serve", "--model", str(bundled_model()), "--port", str(port),
               *args.serve_args]
        proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, preexec_fn=_limit_files)
        url = f"http://127.0.0.1:{port}/api/v1/health"
        for _ in range(300):
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        sel = selectors.DefaultSelector()
        opened = refused = 0
        for i in range(args.stalled):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                             source_address=(f"127.0.0.{2 + i % args.sources}", 0))
            except OSError:
                refused += 1
                continue
            opened += 1
            body = args.body_only or not i % 2
            if not body:
                s.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            else:
                s.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                          b"Content-Length: 5000000\r\n\r\n\xff\xd8\xff" + bytes(1021))  # body never finished
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, {"opened": time.monotonic(), "headers_done": body})
        ok = fail = 0
        worst = 0.0
        health_status: dict[str, int] = {}
        most_uploads = 0
        real: dict[str, int] = {}
        real_worst = 0.0
        photo = _photo()
        predict_url = url.replace("/health", "/predict")
        next_real = time.monotonic()
        closed_by_server: dict[str, int] = {}
        t_end = time.monotonic() + args.seconds
        next_probe = time.monotonic()
        while time.monotonic() < t_end:
            for key, _ in sel.select(timeout=0.1):
                sock, meta = key.fileobj, key.data
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                kind = (f"answered {data[9:12].decode(errors='replace')}" if data.startswith(b"HTTP/1.1")
                        else "closed without answer")
                bucket = f"{'after headers' if meta['headers_done'] else 'mid-headers'}: {kind}"
                age = time.monotonic() - meta["opened"]
                bucket += " within 1 s" if age < 1 else f" after {5 * round(age / 5)} s"
                closed_by_server[bucket] = closed_by_server.get(bucket, 0) + 1
                sel.unregister(sock)
                sock.close()
            if time.monotonic() >= next_probe:
                next_probe += 0.5
                t0 = time.monotonic()
                try:
                    h = httpx.get(url, timeout=5)
                    ok += h.status_code == 200
                    status = h.json().get("status", "?")
                    health_status[status] = health_status.get(status, 0) + 1
                    uploads = (h.json().get("load") or {}).get("uploads") or {}
                    most_uploads = max(most_uploads, uploads.get("in_progress", 0))
                except (httpx.HTTPError, ValueError):
                    fail += 1
                worst = max(worst, time.monotonic() - t0)
            if args.real_every > 0 and time.monotonic() >= next_real:
                next_real += args.real_every
                t0 = time.monotonic()
                try:
                    r = httpx.post(predict_url, files={"image": ("photo.png", photo, "image/png")}, timeout=30)
                    key = f"{r.status_code} {r.json().get('error', 'ok') if r.status_code != 200 else 'ok'}"
                except (httpx.HTTPError, ValueError) as e:
                    key = type(e).__name__
                real[key] = real.get(key, 0) + 1
                real_worst = max(real_worst, time.monotonic() - t0)
        still_open = len(sel.get_map())
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        alive = proc.poll() is None
        proc.terminate()
        proc.wait(timeout=30)
        text = log.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    res = {"stalled_clients": args.stalled, "opened": opened, "refused_at_connect": refused,
           "probe_seconds": args.seconds, "health_ok": ok, "health_failed": fail,
           "health_worst_latency_s": round(worst, 3), "health_statuses": health_status,
           "health_most_uploads_in_progress": most_uploads, "real_user_answers": real,
           "real_user_worst_latency_s": round(real_worst, 3), "body_only": args.body_only,
           "sources": args.sources, "closed_by_server": dict(sorted(closed_by_server.items())),
           "still_open_at_end": still_open, "server_alive": alive, "server_log_bytes": len(text.encode()),
           "server_log_lines": len(lines), "server_tracebacks": text.count("Traceback"),
           "server_log_kinds": _kinds(lines), "server_open_file_limit": 1024, "serve_args": args.serve_args,
           "machine": f"{platform.machine()} {os.cpu_count()} CPUs, load average at end {os.getloadavg()[0]:.1f}",
           "command": " ".join([Path(sys.executable).name, *sys.argv])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


def _kinds(lines: list[str]) -> dict[str, int]:
    """Log lines grouped by their wording (addresses and numbers removed)."""
    import re

    out: dict[str, int] = {}
    for ln in lines:
        key = re.sub(r"\d+(\.\d+)*(:\d+)?", "N", ln)[:110]
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


if __name__ == "__main__":
    main()
