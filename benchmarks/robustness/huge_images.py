"""Issue 23 items 1-2 measured: memory and time of ~40-megapixel images in every lossless format, with
Grad-CAM on, in `hypoderm serve` (default limits) and `hypoderm predict --cam`.

The images are a textured skin-like picture (hypoderm_testkit.app.phone_like_jpeg, accepted by the not-skin
check, so the heat map is drawn) blown up 8x with nearest-neighbour to 7296 x 5472 (39.9 MP): highly
compressible, so each file is far under the 10 MiB upload limit, like the issue's 313 KB PNG (and one WebP
at 3648 x 2736, 10 MP: serve's WebP limit since issue 23 is a quarter of --max-pixels). Per case:
the server's peak RSS while answering it alone (VmHWM, reset through /proc/PID/clear_refs before each
case) and its latency; then three RGBA PNGs at once with a small photo sent meanwhile (its latency),
and four float TIFFs at once; then `predict --cam` on each file (peak RSS of the process, wall time).
Prints one JSON document and writes it to --out.

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/robustness/huge_images.py
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "app"))
from common import free_port, run_measured, start_server  # noqa: E402
from record import run_facts, write_result  # noqa: E402

from hypoderm.inference import bundled_model  # noqa: E402
from hypoderm_testkit.app import phone_like_jpeg  # noqa: E402

BASE = (912, 684)
SCALE = 8  # 7296 x 5472 = 39.9 MP, under serve's 40 MP limit


def _base() -> Image.Image:
    return Image.open(io.BytesIO(phone_like_jpeg(*BASE, seed=0))).convert("RGB")


def _huge(img: Image.Image) -> Image.Image:
    return img.resize((img.width * SCALE, img.height * SCALE), Image.Resampling.NEAREST)


def make_cases(folder: Path) -> dict[str, Path]:
    """The test files (made once, kept in `folder`)."""
    base = _base()
    grey16 = (np.asarray(base.convert("L"), np.uint16) * 257).astype(np.uint16)
    alpha = np.full(base.size[::-1], 255, np.uint8)
    alpha[:40], alpha[-40:] = 0, 128  # a transparent top band and a half-transparent bottom one
    makers = {
        "png_rgb.png": lambda: _huge(base).save(folder / "png_rgb.png", "PNG"),
        "png_rgba.png": lambda: _huge(Image.merge("RGBA", (*base.split(), Image.fromarray(alpha)))).save(
            folder / "png_rgba.png", "PNG"),
        "png_grey16.png": lambda: _huge(Image.fromarray(grey16)).save(folder / "png_grey16.png", "PNG"),
        "webp_lossy.webp": lambda: _huge(base).save(folder / "webp_lossy.webp", "WEBP", quality=80),
        "webp_10mp_rgba.webp": lambda: _huge(Image.merge("RGBA", (*base.split(), Image.fromarray(alpha)))).resize(
            (3648, 2736), Image.Resampling.NEAREST).save(folder / "webp_10mp_rgba.webp", "WEBP", lossless=True),
        "webp_lossless_rgba.webp": lambda: _huge(Image.merge("RGBA", (*base.split(), Image.fromarray(alpha)))).save(
            folder / "webp_lossless_rgba.webp", "WEBP", lossless=True, quality=100, method=4),
        "tiff_float.tif": lambda: _huge(Image.fromarray(np.asarray(base.convert("L"), np.float32) / 255.0, "F")).save(
            folder / "tiff_float.tif", "TIFF", compression="tiff_deflate"),
        "tiff_cmyk.tif": lambda: _huge(base.convert("CMYK")).save(folder / "tiff_cmyk.tif", "TIFF",
                                                                  compression="tiff_deflate"),
        "jpeg_q90.jpg": lambda: _huge(base).save(folder / "jpeg_q90.jpg", "JPEG", quality=90),
    }
    out = {}
    for name, make in makers.items():
        if not (folder / name).is_file():
            make()
        out[name] = folder / name
    return out


def _kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux)


def _post(url: str, data: bytes, name: str) -> dict:
    t0 = time.perf_counter()
    r = httpx.post(url, files={"image": (name, data, "application/octet-stream")}, timeout=300)
    out = {"status_code": r.status_code, "seconds": round(time.perf_counter() - t0, 2)}
    body = r.json()
    out["answer"] = body.get("status") or body.get("error")
    cam = body.get("gradcam") or {}
    if cam.get("available"):
        png = Image.open(io.BytesIO(base64.b64decode(cam["image"].split(",", 1)[1])))
        out["gradcam_size"] = list(png.size)
        out["gradcam_bytes"] = len(cam["image"])
    return out


def server_runs(files: dict[str, Path], model: Path, log: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/predict?gradcam=true"
    proc = start_server(model, port, log=log, wait_s=120)
    res: dict = {"single": {}}
    try:
        httpx.post(url, files={"image": ("w.jpg", phone_like_jpeg(640, 480, 1), "image/jpeg")}, timeout=60)
        res["rss_idle_mb"] = round(_kb(proc.pid, "VmRSS") / 1024, 1)
        for name, path in files.items():
            _reset_peak(proc.pid)
            before = _kb(proc.pid, "VmRSS")
            row = _post(url, path.read_bytes(), name)
            row.update(file_bytes=path.stat().st_size, rss_before_mb=round(before / 1024, 1),
                       peak_rss_mb=round(_kb(proc.pid, "VmHWM") / 1024, 1))
            res["single"][name] = row
            print(name, row, file=sys.stderr)
        res["three_rgba_and_a_small_photo"] = _parallel(url, proc.pid, [files["png_rgba.png"]] * 3, small=True)
        res["four_float_tiffs"] = _parallel(url, proc.pid, [files["tiff_float.tif"]] * 4, small=False)
        res["server_peak_rss_mb"] = round(_kb(proc.pid, "VmHWM") / 1024, 1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    res["server_tracebacks"] = log.read_text(errors="replace").count("Traceback")
    return res


def _parallel(url: str, pid: int, paths: list[Path], small: bool) -> dict:
    _reset_peak(pid)
    rows: list[dict] = [{} for _ in paths]

    def send(i: int, p: Path) -> None:
        rows[i] = _post(url, p.read_bytes(), p.name)

    threads = [threading.Thread(target=send, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    out: dict = {}
    if small:
        time.sleep(1.0)  # the big ones are being decoded
        out["small_photo"] = _post(url, phone_like_jpeg(1024, 768, 2), "small.jpg")
    for t in threads:
        t.join()
    out.update(big=rows, peak_rss_mb=round(_kb(pid, "VmHWM") / 1024, 1))
    print(out, file=sys.stderr)
    return out


def cli_runs(files: dict[str, Path], model: Path, tmp: Path) -> dict:
    out = {}
    for name, path in files.items():
        cmd = [sys.executable, "-m", "hypoderm.cli", "predict", str(path), "--model", str(model), "--json",
               "--cam", str(tmp / "cams")]
        t0 = time.perf_counter()
        rc, stdout, stderr, cpu, peak = run_measured(cmd, timeout=600)
        row = {"exit_code": rc, "seconds": round(time.perf_counter() - t0, 2), "cpu_s": round(cpu, 2),
               "peak_rss_mb": round(peak, 1)}
        try:
            r = json.loads(stdout)["results"][0]
            row["answer"] = r["status"] if r["status"] != "error" else r["reason"]
            if r.get("cam"):
                with Image.open(r["cam"]) as im:
                    row["cam_size"] = list(im.size)
        except (ValueError, KeyError, IndexError):
            row["stdout"], row["stderr"] = stdout[:300], stderr[-300:]
        out[name] = row
        print(name, row, file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model.onnx (default: the bundled model)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hypoderm_huge_images",
                    help="folder for the generated test files (kept between runs)")
    ap.add_argument("--no-cli", action="store_true", help="skip the `predict --cam` runs")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "huge_images.json")
    args = ap.parse_args()
    model = args.model or bundled_model()
    args.cache.mkdir(parents=True, exist_ok=True)
    files = make_cases(args.cache)
    res: dict = {"files": {n: {"bytes": p.stat().st_size, "size": list(Image.open(p).size),
                               "mode": Image.open(p).mode} for n, p in files.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        res["serve"] = server_runs(files, model, Path(tmp) / "server.log")
        if not args.no_cli:
            res["predict_cam"] = cli_runs(files, model, Path(tmp))
    res.update({"model": str(model), "serve_args": "defaults (--max-decodes 2, --max-pixels 40000000, --threads 1)",
                **run_facts()})
    write_result(res, args.out)


if __name__ == "__main__":
    main()
