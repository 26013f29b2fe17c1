"""Full fuzz of `hypoderm serve`: N seeded hostile inputs (hypoderm_testkit.fuzz) POSTed to a real
server (subprocess, default limits) by a few concurrent clients, with `gradcam=true` as the page sends
it, while `--stall` other clients (from loopback addresses 127.0.0.2, ...) keep uploads stalled after
1 KB of a declared 5 MB body (each one reopened as soon as the server answers or closes it). Counts
every answer by status and error code, 5xx, transport errors, hangs (no answer within --timeout),
server crashes (the process died, or a traceback in its log), what the stalled uploads got, the
health statuses seen, and the server's peak RSS (VmHWM) and RSS at the end. Prints one JSON document
and writes it to --out.

    nice -n 10 .venv/bin/python benchmarks/robustness/fuzz_api.py --cases 10000 --seed 0
"""

from __future__ import annotations

import argparse
import asyncio
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "app"))
from common import free_port, start_server  # noqa: E402
from record import run_facts, write_result  # noqa: E402

from hypoderm.inference import bundled_model  # noqa: E402
from hypoderm_testkit.fuzz import fuzz_cases  # noqa: E402


def proc_status_kb(pid: int, key: str) -> int:
    """A `/proc/PID/status` field in kB (VmRSS, VmHWM), 0 when unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class StallFlood:
    """`n` uploads that send 1 KB of a declared 5 MB body and stop, from `sources` loopback addresses, each
    reopened when the server answers or closes it; what the server answered is counted."""

    def __init__(self, port: int, n: int, sources: int) -> None:
        self.port, self.n, self.sources = port, n, sources
        self.answers: Counter[str] = Counter()
        self.opened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, sel: selectors.BaseSelector, i: int) -> None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5,
                                         source_address=(f"127.0.0.{2 + i % self.sources}", 0))
            s.sendall(b"POST /api/v1/predict?gradcam=true HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      b"Content-Length: 5000000\r\n\r\n\x89PNG\r\n\x1a\n" + bytes(1016))
        except OSError as e:
            self.answers[f"connect failed ({type(e).__name__})"] += 1
            return
        self.opened += 1
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for i in range(self.n):
            self._open(sel, i)
        later: list[tuple[float, int]] = []  # (when, slot): a refused upload is retried after 1 s, not in a loop
        while not self.stop.is_set():
            for key, _ in sel.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(4096)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                self.answers[data[9:12].decode(errors="replace") if data.startswith(b"HTTP/1.1") else "closed"] += 1
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
                later.append((time.monotonic() + (0 if data.startswith(b"HTTP/1.1 408") else 1.0), key.data))
            now = time.monotonic()
            due = [slot for when, slot in later if when <= now]
            later = [(when, slot) for when, slot in later if when > now]
            for slot in due:
                self._open(sel, slot)
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]

    def result(self) -> dict:
        return {"stalled_uploads": self.n, "sources": self.sources, "opened": self.opened,
                "server_answers": dict(self.answers)}


async def run(url: str, cases: int, seed: int, clients: int, timeout: float, proc: subprocess.Popen) -> dict:
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    five_xx: list[str] = []
    hangs: list[str] = []
    transport: Counter[str] = Counter()
    transport_examples: list[str] = []
    it = iter(enumerate(fuzz_cases(cases, seed=seed)))
    health_failures = 0
    health_statuses: Counter[str] = Counter()

    async def worker(c: httpx.AsyncClient) -> None:
        nonlocal health_failures
        for i, case in it:
            kinds[case.kind] += 1
            try:
                if case.body is not None:
                    r = await c.post(url, content=case.body, headers={"Content-Type": case.content_type})
                elif i % 3 == 0:
                    r = await c.post(url, content=case.data, headers={"Content-Type": "application/octet-stream"})
                else:
                    r = await c.post(url, files={"image": ("photo.jpg", case.data, "image/jpeg")})
            except httpx.TimeoutException:
                hangs.append(f"{i} {case.kind}")
                continue
            except httpx.HTTPError as e:
                transport[type(e).__name__] += 1
                transport_examples.append(f"{i} {case.kind} {type(e).__name__}: {e}"[:300])
                continue
            try:
                code = r.json().get("error", "ok") if r.status_code != 200 else "ok"
                json_ok = r.headers.get("content-type", "").startswith("application/json")
            except ValueError:
                code, json_ok = "not_json", False
            counts[f"{r.status_code} {code}" + ("" if json_ok else " (NOT JSON)")] += 1
            if r.status_code >= 500:
                five_xx.append(f"{i} {case.kind} {r.status_code} {r.text[:200]}")
            if i % 500 == 0:
                try:
                    h = await c.get(url.replace("/predict", "/health").split("?")[0], timeout=10)
                    health_failures += h.status_code != 200
                    health_statuses[h.json().get("status", "?")] += 1
                except httpx.HTTPError:
                    health_failures += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    by_class = Counter()
    for key, n in counts.items():
        by_class[key.split()[0][0] + "xx" if not key.startswith("200") else "200"] += n
    return {"cases": sum(kinds.values()), "elapsed_s": round(elapsed, 1), "answers_by_class": dict(by_class),
            "answers": dict(sorted(counts.items(), key=lambda kv: -kv[1])), "five_xx": len(five_xx),
            "five_xx_examples": five_xx[:10], "hangs": len(hangs), "hang_examples": hangs[:10],
            "transport_errors": dict(transport), "transport_error_examples": transport_examples[:10],
            "health_failures": health_failures,
            "health_statuses": dict(health_statuses),
            "server_alive": proc.poll() is None, "kinds": dict(sorted(kinds.items()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=120, help="seconds without an answer that count as a hang")
    ap.add_argument("--model", type=Path, default=None, help="model.onnx (default: the bundled model)")
    ap.add_argument("--no-gradcam", action="store_true", help="do not ask for the heat map (the page always does)")
    ap.add_argument("--stall", type=int, default=128, help="stalled uploads held open during the run (0: none)")
    ap.add_argument("--stall-sources", type=int, default=8, help="loopback addresses the stalled uploads come from")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "fuzz_api.json")
    ap.add_argument("serve_args", nargs="*", help="extra `hypoderm serve` options (after --)")
    args = ap.parse_args()
    model = args.model or bundled_model()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        port = free_port()
        proc = start_server(model, port, extra=args.serve_args, log=log, wait_s=90)
        flood = StallFlood(port, args.stall, args.stall_sources)
        if args.stall:
            flood.thread.start()
        query = "" if args.no_gradcam else "?gradcam=true"
        try:
            res = asyncio.run(run(f"http://127.0.0.1:{port}/api/v1/predict{query}", args.cases, args.seed,
                                  args.clients, args.timeout, proc))
            flood.stop.set()
            if args.stall:
                flood.thread.join(30)
            res["stall_flood"] = flood.result()
            res["server_peak_rss_mb"] = round(proc_status_kb(proc.pid, "VmHWM") / 1024, 1)
            res["server_rss_end_mb"] = round(proc_status_kb(proc.pid, "VmRSS") / 1024, 1)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        text = log.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    res["server_log_lines"] = len(lines)
    res["server_tracebacks"] = text.count("Traceback")
    res["server_log_sample"] = lines[:5]
    res["crashes"] = int(not res["server_alive"]) + res["server_tracebacks"]
    res.update({"seed": args.seed, "clients": args.clients, "gradcam": not args.no_gradcam, "model": str(model),
                "serve_args": args.serve_args, **run_facts()})
    write_result(res, args.out)


if __name__ == "__main__":
    main()
