"""Full fuzz of `hypoderm predict`: N seeded hostile files (hypoderm_testkit.fuzz) written to folders
of --batch files, each folder given to one `hypoderm predict DIR --json --cam CAMS` subprocess; about
2% of the entries are not files (FIFOs, broken and looping symbolic links, links to folders and to
/dev/zero, sparse 3 GiB files). Counts results by status and reason, exit codes, crashes (exit code
other than 0/1, output that is not the JSON document, a result missing, an `internal_error`, or a
traceback on stderr), stderr noise, hangs (a run over --timeout) and the peak RSS of the predict
processes. Then `--sidecars` runs of `predict --json --cam` (in this process) with a malformed
model.json beside a copy of the model (hypoderm_testkit.fuzz_cli.sidecar_cases): each must either be refused
(exit 2, one line on stderr, nothing on stdout) or answer with strict JSON (no NaN); exit 3, a
traceback or non-JSON output is a crash. Prints one JSON document and writes it to --out.

    nice -n 10 .venv/bin/python benchmarks/robustness/fuzz_cli.py --cases 10000 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "app"))
from common import run_measured  # noqa: E402

from hypoderm.inference import bundled_model  # noqa: E402
from hypoderm_testkit.app import phone_like_jpeg  # noqa: E402
from hypoderm_testkit.fuzz import fuzz_cases  # noqa: E402
from hypoderm_testkit.fuzz_cli import make_special, sidecar_cases  # noqa: E402

EXTENSIONS = ("jpg", "png", "gif", "tif", "webp", "bmp", "jpeg", "heic", "txt")


def _strict_json(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def sidecar_phase(model: Path, n: int, seed: int, tmp: Path) -> dict:
    """`n` runs of `predict` (in this process) with a malformed sidecar beside a copy of `model`."""
    from PIL import Image

    from hypoderm.cli import main as cli

    base = json.loads(model.with_suffix(".json").read_text())
    onnx = tmp / "sidecar" / "model.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(model.read_bytes())
    photo = tmp / "photo.png"
    Image.open(io.BytesIO(phone_like_jpeg(640, 480, 0))).save(photo)
    outcomes: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    crashes: list[str] = []
    t0 = time.perf_counter()
    for desc, text in sidecar_cases(base, n, seed):
        onnx.with_suffix(".json").write_bytes(text)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli(["predict", str(photo), "--model", str(onnx), "--json", "--cam", str(tmp / "sidecar_cams")])
        stdout, stderr = out.getvalue(), err.getvalue()
        problem = None
        if "Traceback" in stderr or rc not in (0, 1, 2):
            problem = f"exit {rc}: {stderr[-300:]}"
        elif rc == 2:
            outcomes["refused (exit 2)"] += 1
            message = re.sub(r"^(error: )?(.*?\.(json|onnx): )?", "", stderr.strip())
            refusals[re.split(r" must | \(|: |, got ", message)[0][:50]] += 1
            if stdout or len(stderr.strip().splitlines()) != 1:
                problem = f"refusal printed {stdout[:100]!r} / {stderr[:300]!r}"
        else:
            try:
                doc = _strict_json(stdout)
                outcomes[f"answered (exit {rc})"] += 1
                if not isinstance(doc, dict) or len(doc["results"]) != 1:
                    problem = "no result"
                elif doc["results"][0].get("reason") == "internal_error":
                    problem = f"internal_error: {doc['results'][0]['error']}"
            except (ValueError, KeyError, TypeError) as e:
                problem = f"stdout is not strict JSON ({e}): {stdout[:200]!r}"
        if problem:
            outcomes["crash"] += 1
            crashes.append(f"{desc}: {problem}")
    return {"cases": n, "seed": seed, "elapsed_s": round(time.perf_counter() - t0, 1), "outcomes": dict(outcomes),
            "crashes": len(crashes), "crash_examples": crashes[:10],
            "refusals_by_field": dict(refusals.most_common(40))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=500, help="files per `hypoderm predict` run")
    ap.add_argument("--timeout", type=float, default=600, help="seconds for one run before it counts as a hang")
    ap.add_argument("--model", type=Path, default=None, help="model.onnx (default: the bundled model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-cam", action="store_true", help="do not write Grad-CAM overlays")
    ap.add_argument("--sidecars", type=int, default=2000, help="malformed-sidecar runs after the files (0: none)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "fuzz_cli.json")
    args = ap.parse_args()
    model = args.model or bundled_model()
    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    exit_codes: Counter[int] = Counter()
    crashes: list[str] = []
    hangs: list[str] = []
    stderr_lines: Counter[str] = Counter()
    t0 = time.perf_counter()
    cases = iter(fuzz_cases(args.cases, seed=args.seed, multipart=False, specials=True))
    done, run_index, peak_mb = 0, 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        while done < args.cases:
            folder = Path(tmp) / f"run{run_index:03d}"
            folder.mkdir()
            names: dict[str, str] = {}
            for case in cases:
                name = f"{done:05d}_{case.kind}.{EXTENSIONS[done % len(EXTENSIONS)]}"
                if case.special:
                    make_special(folder / name, case.special)
                else:
                    (folder / name).write_bytes(case.data)
                names[name] = case.kind
                kinds[case.kind] += 1
                done += 1
                if len(names) == args.batch:
                    break
            cmd = [sys.executable, "-m", "hypoderm.cli", "predict", str(folder), "--model", str(model), "--json",
                   "--threads", str(args.threads), *([] if args.no_cam else ["--cam", str(Path(tmp) / "cams")])]
            try:
                rc, stdout, stderr, _, rss = run_measured(cmd, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                hangs.append(f"run {run_index} ({len(names)} files)")
                run_index += 1
                continue
            peak_mb = max(peak_mb, rss)
            exit_codes[rc] += 1
            for line in stderr.splitlines():
                if line.strip():
                    stderr_lines[line.strip()[:120]] += 1
            if "Traceback" in stderr:
                crashes.append(f"run {run_index}: traceback: {stderr[-500:]}")
            if rc not in (0, 1):
                crashes.append(f"run {run_index}: exit code {rc}")
            try:
                doc = json.loads(stdout)
                results = doc["results"]
            except (ValueError, KeyError):
                crashes.append(f"run {run_index}: stdout is not the JSON document: {stdout[:200]!r}")
                doc, results = {}, []
            # documents in a folder are skipped (never decoded) and counted in a note, not given a result
            skipped = sum(int(m.group(1)) for n in doc.get("notes", [])
                          if (m := re.match(r"skipped (\d+) file\(s\) in the folders that are not images", n)))
            statuses["skipped (not an image, named in a note)"] += skipped
            if len(results) + skipped != len(names):
                crashes.append(f"run {run_index}: {len(results)} results and {skipped} skipped for {len(names)} files")
            for r in results:
                key = r["status"] if r["status"] != "error" else f"error {r['reason']}"
                statuses[key] += 1
                if r.get("reason") == "internal_error":
                    crashes.append(f"run {run_index}: {Path(r['file']).name}: {r['error']}")
            run_index += 1
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(Path(tmp) / "cams", ignore_errors=True)
        elapsed = time.perf_counter() - t0
        sidecars = sidecar_phase(model, args.sidecars, args.seed, Path(tmp)) if args.sidecars else None
    res = {"cases": done, "runs": run_index, "files_per_run": args.batch, "elapsed_s": round(elapsed, 1),
           "results": dict(sorted(statuses.items(), key=lambda kv: -kv[1])), "exit_codes": dict(exit_codes),
           "crashes": len(crashes), "crash_examples": crashes[:10], "hangs": len(hangs), "hang_examples": hangs,
           "stderr_lines": sum(stderr_lines.values()), "stderr_examples": stderr_lines.most_common(10),
           "peak_rss_mb": round(peak_mb, 1), "kinds": dict(sorted(kinds.items())), "seed": args.seed,
           "model": str(model), "onnx_threads": args.threads, "cam": not args.no_cam, "sidecars": sidecars,
           "machine": f"{platform.machine()} {os.cpu_count()} CPUs, load average at end {os.getloadavg()[0]:.1f}",
           "python": platform.python_version(), "command": " ".join([Path(sys.executable).name, *sys.argv])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
