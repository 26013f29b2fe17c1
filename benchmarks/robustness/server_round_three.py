"""Issue 28 items 2 and 6 measured against `hypoderm serve` with the bundled model (a subprocess).

`nat`: C clients from one address (127.0.0.1, a clinic behind NAT) post a 12 MP phone-like JPEG for D seconds
(benchmarks/app/server_load.py's clients and photo): errors by kind, p50/p99 latency, the server's peak RSS.

`chunks`: N client processes, each from its own loopback address (127.0.0.10, ...), send predict uploads of
`--body-kb` KB one byte per write (TCP_NODELAY, at most --writes-per-s), a new one as soon as the last is
answered, for D seconds, while /api/v1/health is asked every 0.1 s: health latency (worst, p99) and failures,
the uploads' answers by status and code, the bytes each had sent when answered, the server's CPU.

`--server-src DIR` runs the server from another source tree (e.g. the code before this change).

    nice -n 5 .venv/bin/python benchmarks/robustness/server_round_three.py nat --clients 50 --seconds 20 \\
        --out benchmarks/robustness/results/nat_50_clients.json
    nice -n 5 .venv/bin/python benchmarks/robustness/server_round_three.py chunks --clients 12 --seconds 20 \\
        --out benchmarks/robustness/results/tiny_chunks.json
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "app"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, start_server  # noqa: E402
from record import run_facts, write_result  # noqa: E402
from server_load import load, phone_photo_bytes, proc_cpu_s, proc_status_mb  # noqa: E402

from hypoderm.inference import bundled_model  # noqa: E402
from hypoderm_testkit.uploads import answered, open_upload, read_answer  # noqa: E402


def _answer_kind(sock: socket.socket, wait_s: float) -> str:
    data = read_answer(sock, wait_s)
    if not data.startswith(b"HTTP/1.1 "):
        return "no answer" if not data else "garbled"
    code = data.split(b'"error":"', 1)[1].split(b'"', 1)[0].decode() if b'"error":"' in data else "-"
    return f"{data[9:12].decode()} {code}"


def _one_byte_client(port: int, source: str, seconds: float, length: int, rate: float, out: mp.Queue) -> None:
    """Uploads of `length` bytes sent one byte per write, at most `rate` writes/s, one after another, for
    `seconds`."""
    kinds: dict[str, int] = {}
    sent_at_answer: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sock = open_upload(port, source, length, close=False)
        except OSError as e:
            kinds[f"connect {type(e).__name__}"] = kinds.get(f"connect {type(e).__name__}", 0) + 1
            time.sleep(0.05)
            continue
        sent = 0
        t0 = time.monotonic()
        while sent < length and time.monotonic() < end:
            ahead = sent / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
            try:
                sent += sock.send(b"\xff")
            except (BlockingIOError, InterruptedError):
                time.sleep(0.001)
            except OSError:
                break
            if sent % 16 == 0 and answered(sock):
                break
        kind = _answer_kind(sock, max(1.0, end - time.monotonic() + 5))
        sock.close()
        kinds[kind] = kinds.get(kind, 0) + 1
        sent_at_answer.append(sent)
    out.put((kinds, sent_at_answer))


def run_chunks(port: int, pid: int, clients: int, seconds: float, body_kb: int, rate: float) -> dict:
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_one_byte_client, args=(port, f"127.0.0.{10 + i}", seconds, body_kb * 1000, rate, q))
             for i in range(clients)]
    cpu0 = proc_cpu_s(pid)
    for p in procs:
        p.start()
    latencies: list[float] = []
    failures: dict[str, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            ok = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=30).status_code == 200
            if not ok:
                failures["not 200"] = failures.get("not 200", 0) + 1
        except httpx.HTTPError as e:
            failures[type(e).__name__] = failures.get(type(e).__name__, 0) + 1
        latencies.append(time.monotonic() - t0)
        time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
    kinds: dict[str, int] = {}
    sent: list[int] = []
    for _ in procs:
        k, s = q.get(timeout=120)
        for key, n in k.items():
            kinds[key] = kinds.get(key, 0) + n
        sent += s
    for p in procs:
        p.join(30)
    lat = sorted(latencies)
    return {"clients": clients, "body_bytes": body_kb * 1000, "writes_per_s_per_client": rate, "seconds": seconds,
            "health_calls": len(lat), "health_failures": failures,
            "health_worst_s": round(lat[-1], 3), "health_p99_s": round(lat[int(0.99 * (len(lat) - 1))], 3),
            "health_p50_s": round(statistics.median(lat), 4), "uploads": len(sent),
            "upload_answers": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
            "bytes_sent_when_answered_median": int(statistics.median(sent)) if sent else None,
            "server_cpu_s": round(proc_cpu_s(pid) - cpu0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["nat", "chunks"])
    ap.add_argument("--clients", type=int, default=None, help="default: 50 (nat), 12 (chunks)")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--body-kb", type=int, default=88, help="chunks: each upload's declared size")
    ap.add_argument("--writes-per-s", type=float, default=2000,
                    help="chunks: one-byte writes per second per client (a bound, so that 12 clients spinning on "
                         "this machine's 2 cores do not starve the server of CPU themselves)")
    ap.add_argument("--server-src", type=Path, default=None, help="run the server from this src folder")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    clients = args.clients if args.clients is not None else (50 if args.what == "nat" else 12)
    if args.server_src is not None:
        os.environ["PYTHONPATH"] = str(args.server_src.resolve())
    env_src = os.environ.get("PYTHONPATH", "(installed package)")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        port = free_port()
        proc = start_server(bundled_model(), port, log=log)
        try:
            rss_start = proc_status_mb(proc.pid, "VmRSS")
            if args.what == "nat":
                data = phone_photo_bytes()
                cpu0, mine0 = proc_cpu_s(proc.pid), proc_cpu_s(os.getpid())
                res = asyncio.run(load(f"http://127.0.0.1:{port}/api/v1/predict", clients, args.seconds, data))
                # the clients share this machine's 2 cores with the server (and with other work): both CPUs
                res = {"clients": clients, "from_one_address": "127.0.0.1", "image": "4032x3024 JPEG q90",
                       "image_bytes": len(data), **res,
                       "server_cpu_s": round(proc_cpu_s(proc.pid) - cpu0, 1),
                       "clients_cpu_s": round(proc_cpu_s(os.getpid()) - mine0, 1)}
            else:
                res = run_chunks(port, proc.pid, clients, args.seconds, args.body_kb, args.writes_per_s)
            res.update(server_rss_start_mb=rss_start, server_peak_rss_mb=proc_status_mb(proc.pid, "VmHWM"))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        text = log.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    res.update(server_log_lines=len(lines), server_tracebacks=text.count("Traceback"),
               server_log_sample=lines[-3:], server_src=env_src, **run_facts())
    write_result(res, args.out)


if __name__ == "__main__":
    main()
