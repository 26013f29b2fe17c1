// Grad-CAM in the browser from the exported model's own outputs: a line-by-line port of
// hypoderm.inference.explain (the one definition, equal to pytorch-grad-cam's GradCAM at the last feature
// stage). `features` (C, h, w) and `cam_weights` (K, C) come out of the ONNX model next to the logits.

import { resizedSize, roundHalfEven } from "./preprocess.js";

function scale01(a) {
  let mn = Infinity;
  for (const v of a) if (v < mn) mn = v;
  let mx = -Infinity;
  for (let i = 0; i < a.length; i++) { a[i] -= mn; if (a[i] > mx) mx = a[i]; }
  const d = 1e-7 + mx;
  for (let i = 0; i < a.length; i++) a[i] /= d;
  return a;
}

function axis(nIn, nOut) {
  const lo = new Int32Array(nOut), hi = new Int32Array(nOut), w = new Float64Array(nOut);
  for (let i = 0; i < nOut; i++) {
    const pos = Math.min(Math.max((i + 0.5) * (nIn / nOut) - 0.5, 0), nIn - 1);
    lo[i] = Math.floor(pos);
    hi[i] = Math.min(lo[i] + 1, nIn - 1);
    w[i] = pos - lo[i];
  }
  return { lo, hi, w };
}

/** Bilinear resize of a float map (no antialiasing), half-pixel centres, clamped edges
 * (hypoderm.inference.explain.resize_bilinear). Photos are resized by preprocess.js's resizeBilinear (Pillow's). */
export function resizeMap(a, inH, inW, outH, outW) {
  const ys = axis(inH, outH), xs = axis(inW, outW);
  const out = new Float64Array(outH * outW);
  for (let y = 0; y < outH; y++) {
    const r0 = ys.lo[y] * inW, r1 = ys.hi[y] * inW, wy = ys.w[y];
    for (let x = 0; x < outW; x++) {
      const x0 = xs.lo[x], x1 = xs.hi[x], wx = xs.w[x];
      const top = a[r0 + x0] * (1 - wx) + a[r0 + x1] * wx;
      const bottom = a[r1 + x0] * (1 - wx) + a[r1 + x1] * wx;
      out[y * outW + x] = top * (1 - wy) + bottom * wy;
    }
  }
  return out;
}

/** Grad-CAM of class k in [0, 1] at (outH, outW) (hypoderm.inference.explain.gradcam_map). */
export function gradcamMap(features, weights, dims, k, outH, outW) {
  const [C, h, w] = dims;
  const plane = h * w;
  const cam = new Float64Array(plane);
  for (let c = 0; c < C; c++) {
    const wc = weights[k * C + c];
    if (wc === 0) continue;
    const off = c * plane;
    for (let i = 0; i < plane; i++) cam[i] += wc * features[off + i];
  }
  for (let i = 0; i < plane; i++) if (cam[i] < 0) cam[i] = 0;
  const resized = resizeMap(scale01(cam), h, w, outH, outW);
  for (let i = 0; i < resized.length; i++) if (resized[i] < 0) resized[i] = 0;
  return scale01(resized);
}

/** The 'jet' colour map (hypoderm.inference.explain.jet): value in [0, 1] -> [r, g, b] 0..255. */
export function jet(x) {
  x = Math.min(Math.max(x, 0), 1);
  const f = (c) => Math.round(255 * Math.min(Math.max(1.5 - Math.abs(4 * x - c), 0), 1));
  return [f(3), f(2), f(1)];
}

/** The square the model saw, in photo pixels (hypoderm.inference.explain.crop_box): the centre square of the
 * photo, all of a square one. `framed` changes nothing since issue 29 (one rule for every square). */
export function cropBox(width, height, input, framed = false) {
  const { width: rw, height: rh } = resizedSize(width, height, input.resize_size);
  const side = Math.min(rw, rh);
  const left = roundHalfEven((rw - side) / 2), top = roundHalfEven((rh - side) / 2);
  const sx = width / rw, sy = height / rh;
  return { left: left * sx, top: top * sy, width: side * sx, height: side * sy };
}

/**
 * The photo (a canvas) at its own resolution with the heat map of class k blended over the square
 * the model saw, the rest dimmed (hypoderm.inference.explain.overlay_on_photo; `framed` as in cropBox).
 * Returns a PNG data URL.
 */
export function overlayDataUrl(canvas, features, weights, dims, k, input, framed = false, alpha = 0.5) {
  const { width, height } = canvas;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const img = ctx.getImageData(0, 0, width, height);
  const px = img.data;
  const box = cropBox(width, height, input, framed);
  const x0 = Math.round(box.left), y0 = Math.round(box.top);
  const x1 = Math.min(width, Math.round(box.left + box.width)), y1 = Math.min(height, Math.round(box.top + box.height));
  const heat = gradcamMap(features, weights, dims, k, y1 - y0, x1 - x0);
  const out = document.createElement("canvas");
  out.width = width; out.height = height;
  const oc = out.getContext("2d");
  const res = oc.createImageData(width, height);
  const o = res.data;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const inside = x >= x0 && x < x1 && y >= y0 && y < y1;
      if (inside) {
        const [r, g, b] = jet(heat[(y - y0) * (x1 - x0) + (x - x0)]);
        o[i] = Math.round((1 - alpha) * px[i] + alpha * r);
        o[i + 1] = Math.round((1 - alpha) * px[i + 1] + alpha * g);
        o[i + 2] = Math.round((1 - alpha) * px[i + 2] + alpha * b);
      } else {
        o[i] = Math.round(px[i] * 0.45); o[i + 1] = Math.round(px[i + 1] * 0.45); o[i + 2] = Math.round(px[i + 2] * 0.45);
      }
      o[i + 3] = 255;
    }
  }
  oc.putImageData(res, 0, 0);
  return out.toDataURL("image/png");
}
