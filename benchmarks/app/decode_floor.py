"""The CPU floor of a 12 MP request: what decoding the benchmark's phone JPEG costs at each DCT scale
(Pillow's `draft`, libjpeg-turbo), next to the server's other per-request steps, one thread, in-process.
The entropy (Huffman) decoding of the whole file is paid at every scale, so it bounds the throughput of
any server that decodes the upload: 2 cores / (decode CPU) req/s before HTTP, the model and the load
client's own share. Prints one JSON line.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/app/decode_floor.py
"""

from __future__ import annotations

import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, features

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_load import phone_photo_bytes  # noqa: E402

from hypoderm.app.upload import image_from_multipart  # noqa: E402
from hypoderm.imaging.io import load_rgb_bytes  # noqa: E402
from hypoderm.inference import OnnxPredictor, bundled_model, decode_min_size_for  # noqa: E402


def cpu_ms(fn: Callable[[], Any], repeats: int = 30) -> float:
    """Median CPU milliseconds (time.process_time) of `fn` over `repeats` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append((time.process_time() - t0) * 1000)
    return sorted(times)[len(times) // 2]


def draft_decode(data: bytes, scale: int) -> Callable[[], Any]:
    def run() -> Any:
        im = Image.open(io.BytesIO(data))
        if scale > 1:
            im.draft("RGB", (im.width // scale, im.height // scale))
        im.load()
        return im
    return run


def main() -> None:
    data = phone_photo_bytes()
    width, height = Image.open(io.BytesIO(data)).size
    out: dict[str, Any] = {"photo": f"{width}x{height} JPEG, {len(data)} bytes", "threads": 1,
                           "cpu": platform.processor() or platform.machine(), "os_cpus": os.cpu_count(),
                           "libjpeg_turbo": features.version("libjpeg_turbo"), "pillow": Image.__version__}
    for scale in (1, 2, 4, 8):
        out[f"decode_1/{scale}_ms"] = round(cpu_ms(draft_decode(data, scale)), 1)
    predictor = OnnxPredictor(bundled_model(), threads=1)
    min_size = decode_min_size_for(predictor.spec)
    img = load_rgb_bytes(data, min_size=min_size)
    body = (b'--b0undary\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n--b0undary--\r\n")
    out["server_decode_ms"] = round(cpu_ms(lambda: load_rgb_bytes(data, min_size=min_size)), 1)
    out["server_decode_size"] = f"{img.width}x{img.height} (min shorter side {min_size})"
    out["multipart_ms"] = round(cpu_ms(lambda: image_from_multipart(body, "multipart/form-data; boundary=b0undary",
                                                                    len(data) + 1)), 1)
    out["predict_image_ms"] = round(cpu_ms(lambda: predictor.predict_image(img)), 1)
    floor = out["decode_1/8_ms"]
    out["ceiling_req_s_2_cores_decode_only"] = round(2 * 1000 / floor, 1)
    out["ceiling_req_s_2_cores_in_process"] = round(
        2 * 1000 / (out["server_decode_ms"] + out["multipart_ms"] + out["predict_image_ms"]), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
