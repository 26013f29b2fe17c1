"""Shared by the app benchmarks: export a random-weight model at 224 px, run the server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def export_model(name: str, out_dir: Path, num_classes: int = 2, size: int = 224) -> Path:
    """`name` from the model zoo, random weights (latency does not depend on them), exported to out_dir/model.onnx
    at `size` px (resized to size/0.875 first, the usual centre-crop ratio)."""
    import torch

    from hypoderm.export import export_onnx
    from hypoderm.inference.metadata import input_block
    from hypoderm.inference.preprocess import PreprocessSpec
    from hypoderm.models import create_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    classes = ["normal_skin", "vitiligo", "other"][:num_classes]
    metadata = {"format": "hypoderm-onnx/1", "model_name": name, "version": "bench", "precision": "fp32",
                "class_names": classes,
                "input": input_block(PreprocessSpec(size=size, resize_size=round(size / 0.875))),
                "output": {"name": "logits"},
                "temperature": 1.0, "abstain_threshold": 0.6, "metrics": {}, "disclaimer": "benchmark model"}
    out_dir.mkdir(parents=True, exist_ok=True)
    return export_onnx(create_model(name, num_classes=num_classes).eval(), metadata, out_dir / "model.onnx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, threads: int | None = None, extra: Sequence[str] = (),
                 log: Path | None = None, wait_s: float = 60) -> subprocess.Popen:
    """`hypoderm serve` in a subprocess (`extra`: more serve options; `log`: a file for its output);
    returns once /api/v1/health answers, raises RuntimeError (with the log's tail) if it does not in `wait_s`."""
    cmd = [sys.executable, "-m", "hypoderm.cli", "serve", "--model", str(model), "--port", str(port)]
    if threads:
        cmd += ["--threads", str(threads)]
    cmd += list(extra)
    proc = (subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT) if log is not None
            else subprocess.Popen(cmd))
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("server did not start" + (f"; log: {log.read_text()[-2000:]}" if log is not None else ""))


def run_measured(cmd: list[str], timeout: float | None = None) -> tuple[int, str, str, float, float]:
    """Run `cmd` to completion: (exit code, stdout, stderr, CPU seconds, peak RSS MiB of the child).

    The peak is the child's VmHWM polled every 20 ms, not `ru_maxrss`: on Linux a child's ru_maxrss
    starts from its parent's RSS at fork time, so a big benchmark process would inflate it. Raises
    subprocess.TimeoutExpired (after killing the child) when `timeout` passes."""
    import threading

    cpu_before = _children_cpu()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: dict[str, bytes] = {}

    def drain(name: str, stream: object) -> None:
        out[name] = stream.read()  # type: ignore[attr-defined]

    readers = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    peak_kb, deadline = 0, (time.monotonic() + timeout) if timeout else None
    status_file = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(cmd, timeout)
        time.sleep(0.02)
    for t in readers:
        t.join()
    cpu = _children_cpu() - cpu_before  # poll() reaped the child: its CPU time is now in RUSAGE_CHILDREN
    stdout, stderr = out["out"].decode(errors="replace"), out["err"].decode(errors="replace")
    return proc.returncode, stdout, stderr, cpu, peak_kb / 1024


def _children_cpu() -> float:
    """CPU seconds of every child reaped so far."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime
