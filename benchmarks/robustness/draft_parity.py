"""Parity of JPEG draft (DCT-scaled) decoding with full decoding, on the real development photos
upscaled to phone-camera size: for each photo, the bundled model's probabilities from
`load_rgb_bytes(data, min_size=resize_size)` vs `load_rgb_bytes(data)`. Prints one JSON line:
max / p99 / mean absolute probability difference, top-1 agreement, verdict agreement.

    nice -n 10 .venv/bin/python benchmarks/robustness/draft_parity.py --photos ../shared/data/hypopigmented \
        --long-side 4032 --limit 100
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hypoderm.imaging.io import load_rgb_bytes
from hypoderm.inference import OnnxPredictor, bundled_model
from hypoderm.inference.preprocess import decode_min_size


def phone_jpeg(path: Path, long_side: int, quality: int = 90) -> bytes:
    """The photo upscaled (Lanczos) so its longer side is `long_side`, as a JPEG like a phone writes."""
    img = Image.open(path).convert("RGB")
    scale = long_side / max(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--long-side", type=int, default=4032, help="4032 x 3024 = 12.2 MP")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-size", type=int, default=None,
                    help="draft target (default: hypoderm.inference.preprocess.decode_min_size, 2 x resize_size)")
    ap.add_argument("--baseline", action="store_true",
                    help="instead of draft, compare with a re-encode of the photo at JPEG quality 85 (the model's "
                         "sensitivity to an invisible change, for scale)")
    args = ap.parse_args()
    pred = OnnxPredictor(args.model or bundled_model(), threads=args.threads)
    files = sorted(p for p in args.photos.rglob("*.jpg"))[: args.limit]
    diffs, top_same, verdict_same = [], 0, 0
    t_full = t_draft = 0.0
    for f in files:
        data = phone_jpeg(f, args.long_side)
        t0 = time.perf_counter()
        full = pred.predict_image(load_rgb_bytes(data))
        t1 = time.perf_counter()
        if args.baseline:
            buf = io.BytesIO()
            Image.open(io.BytesIO(data)).save(buf, "JPEG", quality=85)
            draft = pred.predict_image(load_rgb_bytes(buf.getvalue()))
        else:
            draft = pred.predict_image(load_rgb_bytes(data, min_size=args.min_size or decode_min_size(pred.spec)))
        t2 = time.perf_counter()
        t_full, t_draft = t_full + t1 - t0, t_draft + t2 - t1
        d = max(abs(full["probabilities"][k] - draft["probabilities"][k]) for k in full["probabilities"])
        diffs.append(d)
        top_same += full["top_k"][0]["label"] == draft["top_k"][0]["label"]
        verdict_same += full["status"] == draft["status"]
    a = np.asarray(diffs)
    print(json.dumps({"photos": len(files), "long_side": args.long_side, "max_abs_prob_diff": round(float(a.max()), 5),
                      "p99_abs_prob_diff": round(float(np.quantile(a, 0.99)), 5),
                      "mean_abs_prob_diff": round(float(a.mean()), 5), "top1_agree": top_same,
                      "verdict_agree": verdict_same, "full_decode_predict_ms": round(1000 * t_full / len(files), 1),
                      "draft_decode_predict_ms": round(1000 * t_draft / len(files), 1), "threads": args.threads,
                      "compared": ("re-encode q85" if args.baseline
                                   else f"draft min_size {args.min_size or decode_min_size(pred.spec)}")}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
