"""Small-photo server throughput before and after "one resize for the model and the not-skin gate" (issue 23
item 8, issue 20 item 2), alternating the two code versions in one run so that machine load lands on both.

The before code is a git commit of this repository checked out into a temporary worktree; each round starts
`hypoderm serve` from that tree (PYTHONPATH), then from this tree, on the same 128 px model (random weights,
exported here; its sidecar carries no `ood` block, so each version uses its own default not-skin gate: the
before code's 224 px gate with its own resize, this code's 128 px gate on the model's crop), and posts a
640x480 JPEG from C concurrent clients for D seconds (benchmarks/app/server_load.py's load). Prints one JSON
line per run and a summary; the server CPU per request is the robust figure on a shared machine.

    .venv/bin/python benchmarks/app/resize_once.py --before f0865ea --rounds 3 --clients 20 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from common import export_model, free_port, start_server  # noqa: E402
from server_load import load, photo_bytes, proc_cpu_s  # noqa: E402

SERVE_LIMITS = ["--max-uploads-per-client", "256"]  # one load client address: the per-client cap is not measured


def run_once(src: Path, model: Path, data: bytes, clients: int, seconds: float, extra: list[str]) -> dict:
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src)
    port = free_port()
    try:
        proc = start_server(model, port, threads=None, extra=extra)
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = env_before
    try:
        cpu0 = proc_cpu_s(proc.pid)
        res = asyncio.run(load(f"http://127.0.0.1:{port}/api/v1/predict", clients, seconds, data))
        res["server_cpu_ms_per_request"] = round(1000 * (proc_cpu_s(proc.pid) - cpu0)
                                                 / max(1, res["requests_ok"] + res["errors"]), 2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="f0865ea", help="commit of the code before the change")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    data = photo_bytes()
    rows: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(wt), args.before], check=True,
                       capture_output=True)
        try:
            model = export_model("hypodermnet", Path(tmp) / "model", num_classes=3, size=128)
            side = model.with_suffix(".json")
            md = json.loads(side.read_text())
            md.pop("ood", None)  # each version's own default gate
            side.write_text(json.dumps(md))
            for r in range(args.rounds):
                order = [("before", wt / "src", []), ("after", ROOT / "src", SERVE_LIMITS)]
                for name, src, extra in (order if r % 2 == 0 else order[::-1]):
                    res = run_once(src, model, data, args.clients, args.seconds, extra)
                    res.update(code=name, round=r, load_average_1m=round(os.getloadavg()[0], 2))
                    rows[name].append(res)
                    print(json.dumps(res), flush=True)
                    time.sleep(2)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], capture_output=True)
    summary = {name: {"req_per_s_median": statistics.median(r["throughput_rps"] for r in runs),
                      "server_cpu_ms_per_request_median": statistics.median(r["server_cpu_ms_per_request"]
                                                                            for r in runs),
                      "errors": sum(r["errors"] for r in runs)} for name, runs in rows.items()}
    print(json.dumps({"summary": summary, "before": args.before, "clients": args.clients, "seconds": args.seconds,
                      "image": "640x480 JPEG q90", "model": "hypodermnet, 128 px, random weights"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
