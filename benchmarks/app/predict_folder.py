"""`hypoderm predict` throughput on a folder of 12 MP phone-like JPEGs: N photos (8 distinct ones,
copied), one `hypoderm predict DIR --json` subprocess, wall time and photos/s; the same with one
photo gives the start-up cost, which is subtracted for the steady-state rate. Also the peak RSS of
the predict process. Prints one JSON line.

    .venv/bin/python benchmarks/app/predict_folder.py --photos 100 --model hypodermnet
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import export_model, run_measured  # noqa: E402
from server_load import phone_photo_bytes  # noqa: E402


def timed_predict(folder: Path, model: Path, threads: int | None) -> tuple[float, int, dict, float, float]:
    """(wall s, exit code, statuses, CPU s, peak RSS MiB) of one `hypoderm predict` run."""
    cmd = [sys.executable, "-m", "hypoderm.cli", "predict", str(folder), "--model", str(model), "--json"]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    rc, stdout, _, cpu, peak = run_measured(cmd)
    wall = time.perf_counter() - t0
    statuses: dict[str, int] = {}
    for r in json.loads(stdout)["results"]:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return wall, rc, statuses, cpu, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hypodermnet", help="model zoo name, exported with random weights")
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: predict's, 1)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = export_model(args.model, root / "model")
        distinct = [phone_photo_bytes(seed=s) for s in range(8)]
        one, many = root / "one", root / "many"
        one.mkdir()
        many.mkdir()
        (one / "p0.jpg").write_bytes(distinct[0])
        for i in range(args.photos):
            (many / f"p{i:04d}.jpg").write_bytes(distinct[i % len(distinct)])
        timed_predict(one, model, args.threads)  # warm the page cache and imports
        startup, _, _, startup_cpu, _ = timed_predict(one, model, args.threads)
        wall, rc, statuses, cpu, peak = timed_predict(many, model, args.threads)
        shutil.rmtree(many)
    cpu_per_photo = (cpu - startup_cpu) / args.photos
    print(json.dumps({"model": args.model, "photos": args.photos, "image": "4032x3024 JPEG q90",
                      "image_bytes_mean": round(sum(map(len, distinct)) / len(distinct)), "exit_code": rc,
                      "statuses": statuses, "wall_s": round(wall, 2), "startup_s": round(startup, 2),
                      "photos_per_s_incl_startup": round(args.photos / wall, 1),
                      "photos_per_s_steady": round(args.photos / max(wall - startup, 1e-9), 1),
                      "cpu_ms_per_photo": round(1000 * cpu_per_photo, 1),
                      # if every core were idle and busy with this run: an upper bound, not a measurement
                      "photos_per_s_bound_idle_cores": round((os.cpu_count() or 1) / cpu_per_photo, 1),
                      "peak_rss_mb": round(peak, 1), "onnx_threads": args.threads or "predict default",
                      "cpus": os.cpu_count(), "load_average_1m_at_end": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
