"""Server throughput and latency: C concurrent clients POST a photo to /api/v1/predict for D seconds
on loopback (each client loops until the deadline: a bounded loop), against `hypoderm serve` in a
subprocess. Prints one JSON line: requests, errors, throughput, p50/p99 latency.

    .venv/bin/python benchmarks/app/server_load.py --model hypodermnet --clients 50 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
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


def photo_bytes() -> bytes:
    rng = np.random.default_rng(0)
    arr = np.clip(rng.normal((200, 150, 120), 10, (480, 640, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


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
            "p50_ms": round(1000 * statistics.median(lat), 1), "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hypodermnet")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads in the server")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = export_model(args.model, Path(tmp) / args.model)
        port = free_port()
        proc = start_server(model, port, args.threads)
        try:
            res = asyncio.run(load(f"http://127.0.0.1:{port}/api/v1/predict", args.clients, args.seconds, photo_bytes()))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps({"model": args.model, "clients": args.clients, "seconds": args.seconds, "image": "640x480 JPEG",
                      "server_threads": args.threads or "ORT default", **res}))


if __name__ == "__main__":
    main()
