"""In-browser timings of the app, measured the honest way: headless Chromium, onnxruntime-web (WASM).

Two parts (both by default; `--part latency` or `--part first-load` for one):

latency: all models in ONE page, timed round-robin (run i of every model before run i+1 of any, the
  order rotated each round), like `hypoderm bench` does natively, so machine drift lands on all
  models alike. Reports per-model medians and the hypodermnet/mnv3s ratio from this one run (ratio of
  medians, and the median of per-round ratios). `session.run` = the model alone on a random input;
  `pipeline` = what app.js does with one framed 512x512 crop: RGBA -> RGB, preprocess.js prepare (the model's
  crop and the not-skin gate's own crop), session.run, resultFromLogits (softmax, skin rule, gate).

first-load: the real app (`create_app`, the bundled model unless --model) with a fresh browser
  profile: bytes the server sent until the first diagnosis is on screen (response bodies as sent,
  so compressed; HTTP headers not counted), the time from navigation to that diagnosis with
  Chromium's network throttling (DevTools protocol Network.emulateNetworkConditions: --mbit Mbit/s
  down and up, --latency-ms round-trip latency), then a second visit (reload once the service worker
  holds the files) and its bytes. Run once with compression (what the app does) and once with the
  server forced to identity encoding (the old behaviour), for comparison.

    .venv/bin/python benchmarks/app/browser_latency.py --runs 50 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import export_model  # noqa: E402

from hypoderm_testkit.app import skin_photo  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

# Models are fetched from /bench/<name>.onnx (served next to the app by `BenchApp`).
JS_LATENCY = """
async ([names, runs, threads]) => {
  const meta = await (await fetch('/api/v1/model')).json();
  const ort = await import(meta.browser_inference.script);
  ort.env.wasm.wasmPaths = meta.browser_inference.script.replace(/[^/]*$/, '');
  ort.env.wasm.numThreads = threads;
  const pp = {...await import('/static/js/preprocess.js'), ...await import('/static/js/verdict.js')};
  const s = meta.input.size;
  const sessions = [];
  for (const n of names) {
    const bytes = new Uint8Array(await (await fetch('/bench/' + n + '.onnx')).arrayBuffer());
    sessions.push(await ort.InferenceSession.create(
        bytes, {executionProviders: ['wasm'], graphOptimizationLevel: 'all'}));
  }
  const x = new ort.Tensor('float32', new Float32Array(3 * s * s).map(() => Math.random()), [1, 3, s, s]);
  const rgba = new Uint8ClampedArray(512 * 512 * 4).map(() => 100 + Math.random() * 100);  // as getImageData gives
  for (const sess of sessions) for (let i = 0; i < 10; i++) await sess.run({input: x});
  const model = names.map(() => []), full = names.map(() => []);
  for (let i = 0; i < runs; i++) {
    for (let j = 0; j < names.length; j++) {
      const k = (i + j) % names.length;  // rotate who goes first
      let t0 = performance.now();
      await sessions[k].run({input: x});
      model[k].push(performance.now() - t0);
      t0 = performance.now();
      const {crop, tensor} = pp.prepare(pp.rgbaToRgb(rgba), 512, 512, meta.input);  // as app.js does
      const out = await sessions[k].run({input: new ort.Tensor('float32', tensor, [1, 3, s, s])});
      pp.resultFromLogits(Array.from(out.logits.data), crop, meta, 3);
      full[k].push(performance.now() - t0);
    }
  }
  return {model, full, isolated: self.crossOriginIsolated, hc: navigator.hardwareConcurrency, ua: navigator.userAgent};
}
"""


class BenchApp:
    """ASGI wrapper around the app: serves /bench/<name>.onnx, counts what the server sends per path
    (body bytes as sent, i.e. compressed), and can force identity encoding (strip Accept-Encoding)."""

    def __init__(self, app: Any, extra_models: dict[str, Path] | None = None) -> None:
        self.app, self.extra = app, extra_models or {}
        self.bytes: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.identity = False

    def total(self) -> int:
        return sum(self.bytes.values())

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        self.requests[path] += 1
        if path.startswith("/bench/") and path[7:-5] in self.extra:
            body = self.extra[path[7:-5]].read_bytes()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if self.identity:
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]}

        async def counted(msg: dict) -> None:
            if msg["type"] == "http.response.body":
                self.bytes[path] += len(msg.get("body", b""))
            await send(msg)

        await self.app(scope, receive, counted)


def serve(app: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    return server, th, port


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def latency(args: argparse.Namespace, browser: Any, tmp: Path) -> None:
    from hypoderm.app.server import create_app

    models = {name: export_model(name, tmp / name, size=args.size) for name in args.models}
    app = BenchApp(create_app(models[args.models[0]]), models)
    server, th, port = serve(app)
    try:
        for threads in args.threads:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            r = page.evaluate(JS_LATENCY, [args.models, args.runs, threads])
            page.close()
            row: dict[str, Any] = {"part": "latency", "threads": threads, "runs": args.runs, "order": "round-robin",
                                   "input": f"1x3x{args.size}x{args.size}", "pipeline_crop": "512x512"}
            for i, name in enumerate(args.models):
                row[name] = {"session_run_ms": {"median": round(statistics.median(r["model"][i]), 2),
                                                "p90": round(pct(r["model"][i], 0.9), 2)},
                             "pipeline_ms": {"median": round(statistics.median(r["full"][i]), 2),
                                             "p90": round(pct(r["full"][i], 0.9), 2)},
                             "onnx_bytes": models[name].stat().st_size}
            if "hypodermnet" in args.models and "mnv3s" in args.models:
                a, b = args.models.index("hypodermnet"), args.models.index("mnv3s")
                row["ratio_hypodermnet_over_mnv3s"] = {
                    "session_run_of_medians": round(
                        statistics.median(r["model"][a]) / statistics.median(r["model"][b]), 3),
                    "session_run_median_of_per_round": round(statistics.median(
                        x / y for x, y in zip(r["model"][a], r["model"][b], strict=True)), 3),
                    "pipeline_of_medians": round(statistics.median(r["full"][a]) / statistics.median(r["full"][b]), 3)}
            row.update({"cross_origin_isolated": r["isolated"], "hardware_concurrency": r["hc"],
                        "browser": r["ua"].split(") ")[-1], "cpu": platform.processor() or platform.machine()})
            print(json.dumps(row), flush=True)
    finally:
        server.should_exit = True
        th.join()


def first_load(args: argparse.Namespace, browser: Any, tmp: Path) -> None:
    from hypoderm.app.server import create_app

    inner = create_app(args.model)
    delivery = inner.state.hypoderm.delivery
    t0 = time.perf_counter()
    delivery.store.warm(delivery.large())  # what `hypoderm serve` does in the background at startup
    warm_s = time.perf_counter() - t0
    app = BenchApp(inner)
    server, th, port = serve(app)
    photo = skin_photo(tmp / "photo.png", 512)
    rate = args.mbit * 1e6 / 8  # bytes per second
    try:
        for compressed in (True, False):
            app.identity = not compressed
            ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            page = ctx.new_page()
            cdp = ctx.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": args.latency_ms,
                                                          "downloadThroughput": rate, "uploadThroughput": rate})
            start_bytes = app.total()
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("body[data-ready]", timeout=600_000)
            ready_s = time.perf_counter() - t0
            page.set_input_files("#file-input", str(photo))
            page.click("#analyse")
            page.wait_for_selector("#result:not([hidden])", timeout=600_000)
            first_s = time.perf_counter() - t0
            first_bytes = app.total() - start_bytes
            mode = page.evaluate("document.getElementById('result').dataset.inference")
            by_path = {p: n for p, n in app.bytes.most_common(4)}
            # second visit: once the service worker holds the files (no throttling needed to count bytes)
            info = page.evaluate("fetch('/api/v1/model').then(r => r.json())")
            page.wait_for_function("m => caches.keys().then(async ks => ks.length > 0 && "
                                   "(await (await caches.open(ks[0])).match(m)) !== undefined)",
                                   arg=info["model_url"], timeout=600_000)
            page.wait_for_function("navigator.serviceWorker.ready.then(r => r.active.state === 'activated')",
                                   timeout=600_000)
            before = app.total()
            t1 = time.perf_counter()
            page.reload()
            page.wait_for_selector("body[data-ready='browser']", timeout=600_000)
            page.evaluate("document.getElementById('result').hidden = true")
            page.set_input_files("#file-input", str(photo))
            page.click("#analyse")
            page.wait_for_selector("#result:not([hidden])", timeout=600_000)
            second_s = time.perf_counter() - t1
            second_bytes = app.total() - before
            ctx.close()
            app.bytes.clear()
            print(json.dumps({
                "part": "first-load", "encoding": "br/gzip by Accept-Encoding" if compressed else "identity (forced)",
                "network": (f"{args.mbit:g} Mbit/s down+up, {args.latency_ms:g} ms latency "
                            "(CDP emulateNetworkConditions)"),
                "bytes_to_first_diagnosis": first_bytes, "time_to_ready_s": round(ready_s, 2),
                "time_to_first_diagnosis_s": round(first_s, 2), "diagnosis_ran_in": mode,
                "largest_responses": by_path,
                "second_visit_bytes": second_bytes, "second_visit_time_to_diagnosis_s": round(second_s, 2),
                "model": str(args.model or "bundled"), "model_bytes": delivery.model.size,
                "precompress_s_this_run": round(warm_s, 1), "photo": "512x512 synthetic PNG",
                "cpu": platform.processor() or platform.machine(),
            }), flush=True)
    finally:
        server.should_exit = True
        th.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["all", "latency", "first-load"], default="all")
    ap.add_argument("--models", nargs="+", default=["hypodermnet", "mnv3s"])
    ap.add_argument("--size", type=int, default=128, help="input size of the latency models (the app ships 128 px)")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--model", default=None, help="first-load: model.onnx to serve (default: the bundled model)")
    ap.add_argument("--mbit", type=float, default=10.0, help="first-load: throttled link speed, Mbit/s")
    ap.add_argument("--latency-ms", type=float, default=50.0, help="first-load: added latency, ms")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            if args.part in ("all", "first-load"):
                first_load(args, browser, Path(tmp))
            if args.part in ("all", "latency"):
                latency(args, browser, Path(tmp))
        finally:
            browser.close()


if __name__ == "__main__":
    main()
