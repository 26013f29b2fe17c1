"""static/js/preprocess.js = hypoderm.inference.preprocess: the page's square rule gives the same uint8 square and
the same input tensor as Python, bit for bit, and its box reduction is Pillow's."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hypoderm.inference import prepare
from hypoderm.inference.preprocess import PreprocessSpec, reduce_factor
from parity.harness import needs_node, run_js

pytestmark = needs_node

SIZES = [(224, 224), (300, 200), (97, 131), (613, 1000), (257, 256), (1024, 1024), (40, 40), (512, 513), (1500, 1500),
         (1201, 1730), (2100, 1111)]


@pytest.mark.parametrize("size", SIZES)
def test_js_preprocessing_matches_python(size: tuple[int, int]) -> None:
    """prepare() in the page equals hypoderm.inference.prepare bit for bit (issue 29: one square rule for a framed
    square and a whole photo, with the box reduction of squares over 2 x 2 x resize_size)."""
    w, h = size
    rng = np.random.default_rng(w * h)
    arr = np.clip(rng.normal(150, 60, (h, w, 3)), 0, 255).astype(np.uint8)
    spec = PreprocessSpec()
    crop, x = prepare(Image.fromarray(arr), spec)
    framed, _ = prepare(Image.fromarray(arr), spec, framed=True)
    np.testing.assert_array_equal(framed, crop)  # one rule
    got = run_js("const r = m.preprocess.prepare(rgb, w, h, input);"
                 "return { crop: r.crop, tensor: r.tensor, factor: m.preprocess.reduceFactor(Math.min(w, h), input) };",
                 rgb=arr, w=w, h=h, input=spec.to_dict())
    np.testing.assert_array_equal(got["crop"].reshape(crop.shape), crop)
    np.testing.assert_array_equal(got["tensor"].reshape(x.shape), x)
    assert got["factor"] == reduce_factor(min(w, h), spec)


def test_js_box_reduction_in_strips_equals_pillow_reduce() -> None:
    """The page reduces a large framed square strip by strip from canvas RGBA (crop.js); reduceRowsInto must equal
    Pillow's Image.reduce bit for bit, last partial row and column of boxes included, at the extremes too."""
    rng = np.random.default_rng(29)
    cases = [(10, 10, 2, 4), (11, 13, 2, 2), (17, 9, 3, 3), (23, 31, 5, 10), (50, 41, 6, 12), (100, 99, 11, 22),
             (64, 65, 8, 64), (37, 29, 9, 9), (300, 301, 13, 39), (13, 14, 4, 8), (40, 40, 20, 20)]
    arrays = []
    for i, (w, h, _, _) in enumerate(cases):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if i % 3 == 1:
            arr[:] = 255  # the largest sums: Pillow's UINT32 arithmetic must not wrap in the port either
        arrays.append(arr)
    got = run_js("""
      return cases.map(([w, h, f, rows], i) => {
        const rgb = arrays[i];
        const outW = Math.ceil(w / f), out = new Uint8ClampedArray(outW * Math.ceil(h / f) * 3);
        const rgba = new Uint8ClampedArray(w * h * 4);
        for (let j = 0; j < w * h; j++) { rgba.set(rgb.subarray(j * 3, j * 3 + 3), j * 4); rgba[j * 4 + 3] = 255; }
        for (let r0 = 0; r0 < h; r0 += rows) {
          const n = Math.min(rows, h - r0);
          m.preprocess.reduceRowsInto(rgba.subarray(r0 * w * 4, (r0 + n) * w * 4), w, n, 4, f, out, outW, r0 / f);
        }
        return out;
      });""", cases=cases, arrays=arrays)
    for (w, h, f, _), arr, out in zip(cases, arrays, got, strict=True):
        want = np.asarray(Image.fromarray(arr).reduce(f))
        np.testing.assert_array_equal(out.reshape(-(-h // f), -(-w // f), 3), want, err_msg=str((w, h, f)))
