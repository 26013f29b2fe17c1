"""fp32 vs INT8 in the browser: onnxruntime-web (WASM) in headless Chromium, round-robin in one page.

Both models are loaded into one page (the same `ort.wasm.min.mjs` the app serves from
node_modules/onnxruntime-web/dist, cross-origin isolated so WASM threads work), warmed up, then timed
call by call (model 1, model 2, ..., model 1, ...), `rounds` x `runs` `session.run` calls per model on a
random 1x3xSxS input, so machine drift lands on all of them alike. Prints one JSON object per thread
count: median of round medians, p90, bytes, and each model's median per-call ratio to the first model
(calls i of both, paired), and the median time of `InferenceSession.create` (`--creates` per model).

Each session gets the session config its sidecar JSON asks for, as the app does (an INT8-weights
model: `extra: {session: {disable_quant_qdq: "1"}}`, so its weights are dequantised at creation);
`PATH:plain` loads it without. Give the same model twice for an A/A control (the noise floor).

    PYTHONPATH=src nice -n 10 python benchmarks/export/browser_int8_latency.py \\
        src/hypoderm/assets/model.onnx /tmp/int8models/qdq-minmax.onnx --threads 1 2
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import platform
import statistics
import threading
from pathlib import Path

JS = """
async ([names, extras, runs, rounds, threads, size, creates]) => {
  const ort = await import('/ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = '/ort/';
  ort.env.wasm.numThreads = threads;
  const sessions = [], blobs = [], create = names.map(() => []);
  for (const n of names) blobs.push(new Uint8Array(await (await fetch('/models/' + n)).arrayBuffer()));
  const options = (k) => {
    const opts = {executionProviders: ['wasm'], graphOptimizationLevel: 'all'};
    if (extras[k]) opts.extra = extras[k];
    return opts;
  };
  for (let c = 0; c < creates; c++) {
    for (let k = 0; k < names.length; k++) {
      const t0 = performance.now();
      const s = await ort.InferenceSession.create(blobs[k], options(k));
      create[k].push(performance.now() - t0);
      await s.release();
    }
  }
  for (let k = 0; k < names.length; k++) sessions.push(await ort.InferenceSession.create(blobs[k], options(k)));
  const data = new Float32Array(3 * size * size).map(() => Math.random() * 2 - 1);
  const x = new ort.Tensor('float32', data, [1, 3, size, size]);
  const out = sessions.map(() => []);
  for (const s of sessions) for (let i = 0; i < 10; i++) await s.run({input: x});
  for (let r = 0; r < rounds; r++) {
    const round = sessions.map(() => []);
    for (let i = 0; i < runs; i++) {
      for (let k = 0; k < sessions.length; k++) {  // call by call, so a busy moment hits every model alike
        const t0 = performance.now();
        await sessions[k].run({input: x});
        round[k].push(performance.now() - t0);
      }
    }
    round.forEach((t, k) => out[k].push(t));
  }
  return {times: out, create, isolated: self.crossOriginIsolated, ua: navigator.userAgent};
}
"""


def _session_config(model: Path) -> dict[str, str]:
    """The session config entries the model's sidecar asks for (INT8-weights: dequantise at load)."""
    side = model.with_suffix(".json")
    if not side.is_file():
        return {}
    return (json.loads(side.read_text()).get("quantization") or {}).get("session_config") or {}


class _Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="ONNX files; PATH:plain = without the sidecar's session config")
    ap.add_argument("--ort-dist", type=Path, default=Path("node_modules/onnxruntime-web/dist"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--creates", type=int, default=5, help="session creations timed per model")
    args = ap.parse_args()
    import tempfile

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ort").symlink_to(args.ort_dist.resolve())
        (root / "models").mkdir()
        names, extras, paths = [], [], []
        for i, arg in enumerate(args.models):
            m = Path(str(arg).removesuffix(":plain"))
            name = f"{i}-{m.name}"
            (root / "models" / name).symlink_to(m.resolve())
            names.append(name)
            paths.append(m)
            config = {} if str(arg).endswith(":plain") else _session_config(m)
            extra: dict[str, dict[str, str]] = {}
            for key, value in config.items():  # "session.disable_quant_qdq" -> {session: {disable_quant_qdq}}
                group, _, rest = key.partition(".")
                extra.setdefault(group, {})[rest] = value
            extras.append(extra or None)
        (root / "index.html").write_text("<!doctype html><title>bench</title>")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            for threads in args.threads:
                r = page.evaluate(JS, [names, extras, args.runs, args.rounds, threads, args.size, args.creates])
                res = {}
                for i, (arg, m, t) in enumerate(zip(args.models, paths, r["times"], strict=True)):
                    flat = sorted(v for rnd in t for v in rnd)
                    res[f"{i}:{arg}"] = {"median_ms": round(statistics.median(statistics.median(x) for x in t), 3),
                                   "p90_ms": round(flat[int(0.9 * (len(flat) - 1))], 3), "bytes": m.stat().st_size,
                                   "round_medians_ms": [round(statistics.median(x), 2) for x in t],
                                   "paired_ratio_to_first": round(statistics.median(
                                       a / b for ra, rb in zip(t, r["times"][0], strict=True)
                                       for a, b in zip(ra, rb, strict=True)), 3),
                                   "session_extra": extras[i],
                                   "create_median_ms": round(statistics.median(r["create"][i]), 1)}
                print(json.dumps({"threads": threads, "input": f"1x3x{args.size}x{args.size}", "runs": args.runs,
                                  "rounds": args.rounds, "cross_origin_isolated": r["isolated"],
                                  "browser": r["ua"].split(") ")[-1], "cpu": platform.processor() or platform.machine(),
                                  "models": res}), flush=True)
            browser.close()
        server.shutdown()


if __name__ == "__main__":
    main()
