"""Issue 28 item 7: `kill -9` during training, many times, then resume; nothing may be lost or changed.

A small synthetic ImageFolder (tests/conftest.make_image_folder: 3 classes of coloured-blob photos) is trained
with `hypoderm train` (48 px, the default recipe and outlier exposure, one thread, patience high enough that
every epoch runs) twice, each in its own process:
- the reference: one uninterrupted run;
- the killed run: started, killed with SIGKILL at a random moment, restarted with `--resume` (without it
  when no last.pt was written yet), killed again, ... N times, then left to finish.
The kill moments are drawn from the reference's own timing: one kill in five during start-up (imports,
split, decoding), the others once the process says its data are ready, plus 0 to (the reference's time from
there to its first finished epoch + 1.5 epochs, scaled by how much slower or faster this process got ready
than the reference): in building the model and the outlier bank, restoring last.pt, a batch, validation
or a checkpoint write.

Checked after every kill: every checkpoint in the run folder (last.pt, best.pt) loads (`corrupt`); the last
epoch the killed process reported as done is <= last.pt's epoch (`epochs_lost`: an epoch reported but not
in last.pt); the next process resumes after exactly last.pt's epoch. At the end: the killed-and-resumed
run's last.pt (weights, training weights, optimiser state, scheduler, early stopping) and best.pt (weights,
temperature, abstain threshold) are bit-identical to the reference's, and its metrics.jsonl has the same
rows (timings aside). Prints one JSON document and writes it to --out.

    PYTHONPATH=src nice -n 5 .venv/bin/python benchmarks/robustness/crash_train.py --kills 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import run_facts, write_result  # noqa: E402

from hypoderm_testkit.datasets import make_image_folder  # noqa: E402

READY = r"\d+ classes \["  # train's first line: the split is made and the photos are decoded
TIMING_KEYS = {"time_s", "train/images_per_s"}  # metrics.jsonl fields that measure the machine, not the run


class Run:
    """One `hypoderm train` process; its output lines with the time each arrived."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.start = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.start, line.rstrip("\n")))

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None when it still runs after `timeout` seconds."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join()
        return rc

    def wait_for_line(self, pattern: str, timeout: float) -> float:
        """Seconds after start at which a line matching `pattern` arrived (waits up to `timeout` s for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for t, line in list(self.lines):
                if re.search(pattern, line):
                    return t
            if time.monotonic() >= deadline or self.proc.poll() is not None:
                return time.monotonic() - self.start
            time.sleep(0.02)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join()

    def epochs_done(self) -> list[tuple[float, int]]:
        """(seconds after start, epoch) of every `epoch N/E` line: printed after that epoch's last.pt."""
        return [(t, int(m.group(1))) for t, line in self.lines if (m := re.match(r"epoch\s+(\d+)/", line))]

    def resumed_after(self) -> int | None:
        for _, line in self.lines:
            if m := re.search(r"resumed from .* after epoch (\d+)", line):
                return int(m.group(1))
        return None

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def train_argv(data: Path, out: Path, args: argparse.Namespace, resume: bool) -> list[str]:
    argv = [sys.executable, "-m", "hypoderm.cli", "train", "--data", str(data), "--out", str(out),
            "--size", str(args.size), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--seed", str(args.seed), "--patience", str(args.epochs + 1), "--device", "cpu", "--no-progress",
            "--outlier-exposure", str(args.outlier_exposure)]
    return argv + (["--resume"] if resume else [])


def checkpoint_state(run: Path) -> tuple[int | None, list[str]]:
    """(last.pt's epoch or None, names of checkpoints that do not load)."""
    from hypoderm.checkpoint import load_checkpoint

    epoch, corrupt = None, []
    for name in ("last.pt", "best.pt"):
        path = run / name
        if not path.exists():
            continue
        try:
            ckpt = load_checkpoint(path)
        except Exception as e:  # noqa: BLE001 - any failure to load is what this counts
            corrupt.append(f"{name}: {type(e).__name__}: {e}")
            continue
        if name == "last.pt":
            epoch = int(ckpt["epoch"])
    return epoch, corrupt


def differences(ref: Path, run: Path) -> list[str]:
    """Everything in which the killed-and-resumed run's results differ from the reference's."""
    import torch

    from hypoderm.checkpoint import load_checkpoint

    diffs: list[str] = []

    def same(a: Any, b: Any, where: str) -> None:
        if isinstance(a, torch.Tensor):
            if not (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)):
                diffs.append(where)
        elif isinstance(a, dict):
            if not isinstance(b, dict) or a.keys() != b.keys():
                diffs.append(f"{where} (keys)")
                return
            for k in a:
                same(a[k], b[k], f"{where}.{k}")
        elif isinstance(a, list | tuple):
            if not isinstance(b, list | tuple) or len(a) != len(b):
                diffs.append(f"{where} (length)")
                return
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                same(x, y, f"{where}[{i}]")
        elif a != b and not (isinstance(a, float) and a != a and b != b):  # NaN == NaN here
            diffs.append(where)

    last_a, last_b = load_checkpoint(ref / "last.pt"), load_checkpoint(run / "last.pt")
    for key in ("epoch", "state_dict", "state_dict_train", "optimizer", "scheduler", "scaler", "ema", "early_stop"):
        same(last_a[key], last_b[key], f"last.{key}")
    same({k: v for k, v in last_a["metrics"].items() if k not in TIMING_KEYS},
         {k: v for k, v in last_b["metrics"].items() if k not in TIMING_KEYS}, "last.metrics")
    best_a, best_b = load_checkpoint(ref / "best.pt"), load_checkpoint(run / "best.pt")
    for key in ("epoch", "state_dict", "temperature", "abstain_threshold", "ood", "metrics"):
        same(best_a[key], best_b[key], f"best.{key}")
    rows_a, rows_b = ([{k: v for k, v in json.loads(r).items() if k not in TIMING_KEYS}
                       for r in (d / "metrics.jsonl").read_text().splitlines()] for d in (ref, run))
    same(rows_a, rows_b, "metrics.jsonl")
    return diffs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--per-class", type=int, default=14, help="photos per class (3 classes)")
    p.add_argument("--outlier-exposure", type=float, default=0.5, help="the default recipe's weight")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--kill-seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/robustness/results/crash_train.json")
    args = p.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    tmp = tempfile.TemporaryDirectory(prefix="crash_train-") if args.workdir is None else None
    work = args.workdir or Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not data.exists():
        make_image_folder(data, per_class=args.per_class, size=96)
    rng = random.Random(args.kill_seed)

    # the reference: one uninterrupted run, which also gives the start-up and epoch times
    ref_dir, run_dir = work / "reference", work / "killed"
    for d in (ref_dir, run_dir):
        if d.exists():
            import shutil

            shutil.rmtree(d)
    t0 = time.monotonic()
    ref = Run(train_argv(data, ref_dir, args, resume=False), env)
    if ref.wait() != 0:
        print(ref.text(), file=sys.stderr)
        raise SystemExit("the reference run failed")
    ref_wall = time.monotonic() - t0
    done = ref.epochs_done()
    epoch_s = (done[-1][0] - done[0][0]) / max(1, len(done) - 1)
    ready_s = ref.wait_for_line(READY, 0)  # imports, split and decoding: until the data line
    first_epoch_s = done[0][0] - ready_s  # model, outlier bank, then the first epoch and its checkpoint
    print(f"reference: {ref_wall:.1f} s; data ready after {ready_s:.1f} s, first epoch done {first_epoch_s:.1f} s "
          f"later, then ~{epoch_s:.2f} s per epoch", flush=True)

    kills: list[dict[str, Any]] = []
    corrupt: list[str] = []
    lost = wrong_resume = 0
    resumes = fresh_starts = 0
    expected_resume: int | None = None
    finished = False
    t1 = time.monotonic()
    while True:
        resume = (run_dir / "last.pt").exists()
        resumes += resume
        fresh_starts += not resume
        run = Run(train_argv(data, run_dir, args, resume), env)
        if len(kills) < args.kills:
            if rng.random() < 0.2:  # in start-up: imports, split, decoding
                delay = rng.uniform(0.2, ready_s)
            else:  # once the data are ready: in the first batches, epochs, validations, checkpoint writes
                ready = run.wait_for_line(READY, timeout=20 * ready_s)
                load = min(4.0, max(0.5, ready / ready_s))  # the machine's load changes: scale to it
                delay = ready + load * rng.uniform(0.0, first_epoch_s + 1.5 * epoch_s)
            rc = run.wait(max(0.0, delay - (time.monotonic() - run.start)))
        else:
            rc = run.wait()
        # a process killed in start-up never says where it resumes; one that trained must have said it
        said = run.resumed_after()
        if resume and (said is not None or run.epochs_done()) and said != expected_resume:
            wrong_resume += 1
            print(f"resumed after epoch {said}, expected {expected_resume}", flush=True)
        if rc is not None:
            if rc != 0:
                print(run.text(), file=sys.stderr)
                raise SystemExit(f"a training process failed (exit {rc})")
            finished = True
            break
        run.kill()
        epoch, bad = checkpoint_state(run_dir)
        corrupt += bad
        reported = max((e for _, e in run.epochs_done()), default=0)
        lost += max(0, reported - (epoch or 0))
        expected_resume = epoch
        tmp_left = sorted(f.name for f in run_dir.glob("*.tmp"))
        kills.append({"after_s": round(delay, 2), "last_epoch": epoch, "epochs_reported": reported,
                      "tmp_files_left": tmp_left})
        print(f"kill {len(kills):>2} at {delay:5.2f} s: last.pt epoch {epoch}, reported {reported}"
              + (f", left {tmp_left}" if tmp_left else "") + (f", CORRUPT {bad}" if bad else ""), flush=True)
    killed_wall = time.monotonic() - t1
    _, bad = checkpoint_state(run_dir)
    corrupt += bad
    diffs = differences(ref_dir, run_dir) if finished else ["the killed run never finished"]
    res = {
        "what": "SIGKILL at random moments during `hypoderm train`, resumed with --resume each time (issue 28 item 7)",
        "setup": {"photos": 3 * args.per_class, "size": args.size, "epochs": args.epochs,
                  "batch_size": args.batch_size, "outlier_exposure": args.outlier_exposure, "seed": args.seed,
                  "kill_seed": args.kill_seed, "threads": 1, "recipe": "crop-tone (default)"},
        "kills": len(kills), "fresh_starts": fresh_starts, "resumes": resumes,
        # killed before its process finished an epoch (start-up, or the first epoch after a resume)
        "kills_before_an_epoch_ended": sum(k["epochs_reported"] == 0 for k in kills),
        "kills_that_left_a_tmp_file": sum(bool(k["tmp_files_left"]) for k in kills),
        "corrupt_checkpoints": len(corrupt), "corrupt": corrupt, "epochs_lost": lost,
        "resumes_from_the_wrong_epoch": wrong_resume,
        "bit_identical_to_uninterrupted": finished and not diffs, "differences": diffs[:20],
        "reference_wall_s": round(ref_wall, 1), "killed_run_wall_s": round(killed_wall, 1),
        "kill_log": kills, **run_facts(),
    }
    write_result(res, args.out)
    if tmp is not None:
        tmp.cleanup()
    ok = (len(kills) == args.kills and not corrupt and not lost and not wrong_resume and finished and not diffs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
