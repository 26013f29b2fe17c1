"""In-browser inference latency: onnxruntime-web (WASM) in headless Chromium, as the app runs it.

For each model: 10 warm-up runs, then N timed `session.run` calls on a 1x3x224x224 input, and
separately N timed runs of the whole in-page pipeline (the app's preprocess.js on a 512x512 crop
+ session.run + softmax/OOD). Prints one JSON line per (model, threads).

    .venv/bin/python benchmarks/app/browser_latency.py --runs 50 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import export_model  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

JS = """
async ([runs, threads]) => {
  const meta = await (await fetch('/api/v1/model')).json();
  const ort = await import(meta.browser_inference.script);
  ort.env.wasm.wasmPaths = '/vendor/ort/';
  ort.env.wasm.numThreads = threads;
  const bytes = new Uint8Array(await (await fetch(meta.model_url)).arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, {executionProviders: ['wasm'], graphOptimizationLevel: 'all'});
  const pp = await import('/static/js/preprocess.js');
  const s = meta.input.size;
  const x = new ort.Tensor('float32', new Float32Array(3 * s * s).map(() => Math.random()), [1, 3, s, s]);
  for (let i = 0; i < 10; i++) await session.run({input: x});
  const model = [];
  for (let i = 0; i < runs; i++) { const t0 = performance.now(); await session.run({input: x}); model.push(performance.now() - t0); }
  const rgb = new Uint8ClampedArray(512 * 512 * 3).map(() => 100 + Math.random() * 100);
  const full = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const {crop, tensor} = pp.prepare(rgb, 512, 512, meta.input);
    const out = await session.run({input: new ort.Tensor('float32', tensor, [1, 3, s, s])});
    pp.resultFromLogits(Array.from(out.logits.data), crop, meta, 3);
    full.push(performance.now() - t0);
  }
  return {model, full, isolated: self.crossOriginIsolated, hc: navigator.hardwareConcurrency, ua: navigator.userAgent};
}
"""


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["hypodermnet", "mnv3s"])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    import uvicorn
    from playwright.sync_api import sync_playwright

    from hypoderm.app.server import create_app

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for name in args.models:
            model = export_model(name, Path(tmp) / name)
            server = uvicorn.Server(uvicorn.Config(create_app(model), host="127.0.0.1", port=0, log_level="warning"))
            th = threading.Thread(target=server.run, daemon=True)
            th.start()
            while not server.started:
                time.sleep(0.05)
            port = server.servers[0].sockets[0].getsockname()[1]
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            for threads in args.threads:
                r = page.evaluate(JS, [args.runs, threads])
                print(json.dumps({
                    "model": name, "threads": threads, "runs": args.runs, "input": "1x3x224x224",
                    "session_run_ms": {"median": round(statistics.median(r["model"]), 2), "p90": round(pct(r["model"], 0.9), 2)},
                    "pipeline_ms": {"median": round(statistics.median(r["full"]), 2), "p90": round(pct(r["full"], 0.9), 2)},
                    "cross_origin_isolated": r["isolated"], "hardware_concurrency": r["hc"],
                    "browser": r["ua"].split(") ")[-1], "onnx_bytes": model.stat().st_size, "cpu": platform.processor() or platform.machine(),
                }), flush=True)
            page.close()
            server.should_exit = True
            th.join()
        browser.close()


if __name__ == "__main__":
    main()
