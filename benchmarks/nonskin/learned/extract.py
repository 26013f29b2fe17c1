"""Frozen ImageNet MobileNetV3-Small features of every real skin photo, every real non-skin photo and the
synthetic suites, at the crops the not-skin check sees (128 px squares), cached in one .npz for the fits.

    OMP_NUM_THREADS=2 python benchmarks/nonskin/learned/extract.py --shared ../shared --out /tmp/gatefeat.npz
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from hypoderm.data import nonskin
from hypoderm.imaging.io import load_rgb

SIZE = 128
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def square(img: Image.Image, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    w, h = img.size
    if box is None:
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    sq = img.crop(box)
    return np.asarray(sq.resize((SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=None), np.uint8)


def closeup_boxes(img: Image.Image, rng: np.random.Generator, n: int) -> list[tuple[int, int, int, int]]:
    w, h = img.size
    out = []
    for _ in range(n):
        s = max(16, int(min(w, h) * rng.uniform(0.25, 0.7)))
        x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        out.append((x, y, x + s, y + s))
    return out


class Trunk(torch.nn.Module):
    def __init__(self, weights: Path) -> None:
        super().__init__()
        m = torchvision.models.mobilenet_v3_small()
        m.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.m = m.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        h = x
        for i, layer in enumerate(self.m.features):
            h = layer(h)
            if i in (3, 8):
                out[f"l{i}"] = torch.cat([h.mean((2, 3)), h.std((2, 3))], 1)
        out["f576"] = h.mean((2, 3))
        hid = self.m.classifier[1](self.m.classifier[0](out["f576"]))
        out["f1024"] = hid
        out["logits"] = self.m.classifier[3](hid)
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--closeups", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    trunk = Trunk(args.shared / "weights/mobilenet_v3_small-imagenet-tfslim.pth")
    rng = np.random.default_rng(0)
    crops: list[np.ndarray] = []
    meta: list[tuple[str, str, str, str, str]] = []  # side, origin, category, view, name

    def add(side: str, origin: str, cat: str, name: str, img: Image.Image, n_close: int) -> None:
        crops.append(square(img))
        meta.append((side, origin, cat, "centre", name))
        for b in closeup_boxes(img, rng, n_close):
            c = square(img, b)
            if side == "skin" and nonskin.kovac_fraction(c) < 0.3:
                continue  # a close-up of a skin photo's background is not a photo of skin
            crops.append(c)
            meta.append((side, origin, cat, "closeup", name))

    t0 = time.time()
    ms = args.shared / "data/multisource"
    for row in csv.DictReader((ms / "index-v2.csv").read_text().splitlines()):
        add("skin", row["origin"], row["label"], row["path"], load_rgb(ms / row["path"]), args.closeups)
    ns = args.shared / "data/nonskin"
    for row in csv.DictReader((ns / "index.csv").read_text().splitlines()):
        add("nonskin", row["origin"], row["category"], row["path"], load_rgb(ns / row["path"]), args.closeups)
    for fam, img in nonskin.suite(30, 1000, nonskin.FIT):
        add("synthetic_fit", fam, fam, fam, img, 1)
    for fam, img in nonskin.suite(65, 50_000, nonskin.TEST):
        add("synthetic_test", fam, fam, fam, img, 0)
    for name, img in nonskin.sample_photos():
        add("samples", "samples", "samples", name, img.convert("RGB"), 6)
    print(f"{len(crops)} crops in {time.time() - t0:.0f} s", flush=True)

    x = np.stack(crops).astype(np.float32) / 255.0
    x = ((x - MEAN) / STD).transpose(0, 3, 1, 2)
    feats: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(x), 64):
        out = trunk(torch.from_numpy(np.ascontiguousarray(x[i:i + 64])))
        for k, v in out.items():
            feats.setdefault(k, []).append(v.numpy())
    print(f"features in {time.time() - t0:.0f} s", flush=True)
    m = np.array(meta)
    np.savez_compressed(args.out, side=m[:, 0], origin=m[:, 1], category=m[:, 2], view=m[:, 3], name=m[:, 4],
                        crops=np.stack(crops), **{k: np.concatenate(v) for k, v in feats.items()})


if __name__ == "__main__":
    main()
