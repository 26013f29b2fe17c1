"""Server throughput and latency: C concurrent clients POST a photo to /api/v1/predict for D seconds
on loopback (each client loops until the deadline: a bounded loop), against `hypoderm serve` in a
subprocess. Prints one JSON line: requests, errors, throughput, p50/p99 latency, and the server's
peak RSS (VmHWM) and its RSS 3 s after the load (whether memory was returned).

    .venv/bin/python benchmarks/app/server_load.py --model hypodermnet --clients 50 --seconds 30
    .venv/bin/python benchmarks/app/server_load.py --model hypodermnet --clients 50 --seconds 30 --image 12mp
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import export_model, free_port, start_server  # noqa: E402

from hypoderm_testkit.app import phone_like_jpeg  # noqa: E402


def photo_bytes() -> bytes:
    rng = np.random.default_rng(0)
    arr = np.clip(rng.normal((200, 150, 120), 10, (480, 640, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def phone_photo_bytes(width: int = 4032, height: int = 3024, seed: int = 0) -> bytes:
    """A 12.2 MP JPEG like a phone writes (quality 90, 4:2:0); the tests' generator with the noise level
    (std 5) the recorded runs used."""
    return phone_like_jpeg(width, height, seed, noise=5.0)


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (/proc/PID/stat), 0 when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_status_mb(pid: int, key: str) -> float:
    """A /proc/PID/status memory field (VmRSS, VmHWM) in MiB; 0 when unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


async def load(url: str, clients: int, seconds: float, data: bytes) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def client(c: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                r = await c.post(url, files={"image": ("p.jpg", data, "image/jpeg")})
                if r.status_code != 200:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                    continue
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"requests_ok": len(lat), "errors": sum(errors.values()), "error_kinds": errors,
            "elapsed_s": round(elapsed, 1), "throughput_rps": round(len(lat) / elapsed, 1),
            "p50_ms": round(1000 * statistics.median(lat), 1),
            "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hypodermnet")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads in the server")
    ap.add_argument("--image", choices=["640x480", "12mp"], default="640x480",
                    help="the photo every client sends: a 640x480 JPEG or a 4032x3024 (12.2 MP) phone-like JPEG")
    args = ap.parse_args()
    data = phone_photo_bytes() if args.image == "12mp" else photo_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        model = export_model(args.model, Path(tmp) / args.model)
        port = free_port()
        proc = start_server(model, port, args.threads)
        try:
            rss_start, cpu_start = proc_status_mb(proc.pid, "VmRSS"), proc_cpu_s(proc.pid)
            res = asyncio.run(load(f"http://127.0.0.1:{port}/api/v1/predict", args.clients, args.seconds, data))
            # CPU the server spent per answered request: with C idle cores, at most C / this requests/s.
            res["server_cpu_ms_per_request"] = round(1000 * (proc_cpu_s(proc.pid) - cpu_start)
                                                     / max(1, res["requests_ok"] + res["errors"]), 1)
            time.sleep(3)
            res.update(server_rss_start_mb=rss_start, server_peak_rss_mb=proc_status_mb(proc.pid, "VmHWM"),
                       server_rss_after_mb=proc_status_mb(proc.pid, "VmRSS"))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps({"model": args.model, "clients": args.clients, "seconds": args.seconds,
                      "image": ("4032x3024 JPEG q90" if args.image == "12mp" else "640x480 JPEG q90"),
                      "image_bytes": len(data), "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                      "server_threads": args.threads or "serve default", **res}))


if __name__ == "__main__":
    main()
