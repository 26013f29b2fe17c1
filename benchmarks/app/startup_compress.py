"""Brotli before the first visitor (issue 29): how long `hypoderm serve` spends compressing the runtime and the
bundled model before it listens (Delivery.prepare), with an empty cache (first start) and a filled one (every
later start), and how long the background brotli-11 takes after a first start. Sizes are the bytes a phone gets.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/app/startup_compress.py [--startup-only]

`--startup-only` does not wait for the background brotli-11 (minutes on a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from hypoderm.app.assets import STARTUP_BROTLI_QUALITY, Delivery
from hypoderm.app.state import REPO_NODE_MODULES, STATIC_DIR, find_web_assets
from hypoderm.app.web_runtime import ORT_FILES
from hypoderm.inference.model_path import resolve_model_path


def sizes(d: Delivery) -> dict[str, dict[str, int | None]]:
    out: dict[str, dict[str, int | None]] = {}
    for a in d.large():
        out[a.path.name] = {"raw": a.size, **{enc: (len(v) if isinstance(v, bytes) else v.stat().st_size)
                                              if v is not None else None for enc, v in a.variants.items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model.onnx (default: the bundled model)")
    ap.add_argument("--out", type=Path, default=None, help="append the result as one JSON line to this file")
    ap.add_argument("--startup-only", action="store_true", help="do not wait for the background brotli-11")
    args = ap.parse_args()
    web = find_web_assets(REPO_NODE_MODULES)
    if web is None:
        raise SystemExit("onnxruntime-web not found (scripts/install_web_assets.sh)")
    model = resolve_model_path(args.model)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        first = Delivery.build(model, STATIC_DIR, web, ORT_FILES, cache)
        t0 = time.perf_counter()
        later = first.prepare()
        cold = time.perf_counter() - t0
        served_first = sizes(first)
        t1 = time.perf_counter()
        background: float | None = None
        served_after = None
        warm = None
        if later is not None and not args.startup_only:
            later.join()
            background = round(time.perf_counter() - t1, 2)
            served_after = sizes(first)
            second = Delivery.build(model, STATIC_DIR, web, ORT_FILES, cache)
            t2 = time.perf_counter()
            assert second.prepare() is None
            warm = round(time.perf_counter() - t2, 3)
    row = {"machine": f"{platform.machine()} {platform.node()}", "model": str(model),
           "startup_brotli_quality": STARTUP_BROTLI_QUALITY, "load_average_before": round(load_before, 2),
           "startup_s_empty_cache": round(cold, 2), "background_brotli11_s": background,
           "startup_s_filled_cache": warm, "bytes_first_visitor": served_first,
           "bytes_after_brotli11": served_after}
    print(json.dumps(row, indent=1))
    if args.out:
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
