// Browser preprocessing, OOD check and verdict: a bit-exact port of the Python inference path
// (hypoderm.preprocess, hypoderm.ood, hypoderm.inference.result_from_logits), so that the same
// pixels give the same tensor in the browser and on the server.
//
// Resize = Pillow's bilinear resampling (ImagingResample: separable triangle filter widened by the
// downscale factor, i.e. antialiased; 22-bit fixed-point weights; horizontal pass, clip to 8 bits,
// then vertical pass). Canvas drawImage would give different pixels, hence this port.

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const ONE = 1 << PRECISION_BITS;

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x) {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function bilinearFilter(x) {
  x = Math.abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (support 1). */
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0.0;
    const k = xx * ksize;
    for (let x = 0; x < xmax; x++) {
      const w = bilinearFilter((x + xmin - center + 0.5) * ss);
      kk[k + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0.0 ? kk[k + x] / ww : kk[k + x];
      kk[k + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v) {
  if (v >= ONE * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / ONE);
}

function resampleHorizontal(src, w, h, outW) {
  const { ksize, bounds, kk } = coefficients(w, outW);
  const out = new Uint8ClampedArray(outW * h * 3);
  for (let y = 0; y < h; y++) {
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], k = xx * ksize;
      let r = HALF, g = HALF, b = HALF;
      for (let x = 0; x < xmax; x++) {
        const i = (y * w + xmin + x) * 3, c = kk[k + x];
        r += src[i] * c; g += src[i + 1] * c; b += src[i + 2] * c;
      }
      const o = (y * outW + xx) * 3;
      out[o] = clip8(r); out[o + 1] = clip8(g); out[o + 2] = clip8(b);
    }
  }
  return out;
}

function resampleVertical(src, w, h, outH) {
  const { ksize, bounds, kk } = coefficients(h, outH);
  const out = new Uint8ClampedArray(w * outH * 3);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1], k = yy * ksize;
    for (let xx = 0; xx < w; xx++) {
      let r = HALF, g = HALF, b = HALF;
      for (let y = 0; y < ymax; y++) {
        const i = ((ymin + y) * w + xx) * 3, c = kk[k + y];
        r += src[i] * c; g += src[i + 1] * c; b += src[i + 2] * c;
      }
      const o = (yy * w + xx) * 3;
      out[o] = clip8(r); out[o + 1] = clip8(g); out[o + 2] = clip8(b);
    }
  }
  return out;
}

/** RGBA (canvas ImageData.data) -> packed RGB; alpha is ignored (the crop canvas is opaque). */
export function rgbaToRgb(rgba) {
  const n = rgba.length / 4;
  const out = new Uint8ClampedArray(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = rgba[i * 4]; out[i * 3 + 1] = rgba[i * 4 + 1]; out[i * 3 + 2] = rgba[i * 4 + 2];
  }
  return out;
}

/** Pillow `img.resize((outW, outH), BILINEAR, reducing_gap=None)` on packed RGB. */
export function resizeBilinear(rgb, w, h, outW, outH) {
  let data = rgb, curW = w;
  if (outW !== w) { data = resampleHorizontal(data, w, h, outW); curW = outW; }
  if (outH !== h) data = resampleVertical(data, curW, h, outH);
  return data;
}

/** hypoderm.preprocess.resize_shorter: shorter side -> resizeSize, the other by Python round(). */
export function resizeShorter(rgb, w, h, resizeSize) {
  if (Math.min(w, h) === resizeSize) return { data: rgb, width: w, height: h };
  let nw, nh;
  if (w <= h) { nw = resizeSize; nh = Math.max(1, roundHalfEven((h * resizeSize) / w)); }
  else { nw = Math.max(1, roundHalfEven((w * resizeSize) / h)); nh = resizeSize; }
  return { data: resizeBilinear(rgb, w, h, nw, nh), width: nw, height: nh };
}

/** hypoderm.preprocess.center_crop_array on packed RGB. */
export function centerCrop(rgb, w, h, size) {
  const top = roundHalfEven((h - size) / 2.0), left = roundHalfEven((w - size) / 2.0);
  const out = new Uint8ClampedArray(size * size * 3);
  for (let y = 0; y < size; y++) {
    const from = ((top + y) * w + left) * 3;
    out.set(rgb.subarray(from, from + size * 3), y * size * 3);
  }
  return out;
}

/** hypoderm.preprocess.normalize_uint8: HWC uint8 -> CHW float32, float32 arithmetic like numpy. */
export function normalize(crop, size, mean, std) {
  const f = Math.fround;
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  const m = mean.map(f), s = std.map(f);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const x = f(crop[i * 3 + c] / 255.0);
      out[c * plane + i] = f(f(x - m[c]) / s[c]);
    }
  }
  return out;
}

/** Everything before the model: returns the uint8 crop (for the OOD check) and the input tensor. */
export function prepare(rgb, w, h, input) {
  if ((input.interpolation || "bilinear") !== "bilinear") {
    throw new Error(`unsupported interpolation ${input.interpolation}`);
  }
  const resized = resizeShorter(rgb, w, h, input.resize_size);
  const crop = centerCrop(resized.data, resized.width, resized.height, input.size);
  return { crop, tensor: normalize(crop, input.size, input.mean, input.std) };
}

/** hypoderm.ood.skin_fraction: Chai & Ngan (1999) YCrCb rule, double arithmetic like numpy float64. */
export function skinFraction(crop) {
  const n = crop.length / 3;
  let skin = 0;
  for (let i = 0; i < n; i++) {
    const r = crop[i * 3], g = crop[i * 3 + 1], b = crop[i * 3 + 2];
    const y = 0.299 * r + 0.587 * g + 0.114 * b;
    const cr = 128.0 + 0.713 * (r - y);
    const cb = 128.0 + 0.564 * (b - y);
    if (cr >= 133.0 && cr <= 173.0 && cb >= 77.0 && cb <= 127.0) skin++;
  }
  return skin / n;
}

/** softmax(logits / temperature) in doubles, max-subtracted like hypoderm.inference.softmax. */
export function softmax(logits, temperature) {
  const z = Array.from(logits, (v) => v / temperature);
  const mx = Math.max(...z);
  const e = z.map((v) => Math.exp(v - mx));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

const DEFAULT_OOD = { skin_fraction_min: 0.05, max_logit_min: -1e9 };

/** hypoderm.inference.result_from_logits (messages are localised by the page, not here). */
export function resultFromLogits(logits, crop, metadata, topK = 3) {
  const names = metadata.class_names;
  if (logits.length !== names.length) {
    throw new Error(`model gives ${logits.length} outputs but metadata names ${names.length} classes`);
  }
  const probs = softmax(logits, Number(metadata.temperature));
  const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
  const k = Math.max(1, Math.min(topK, names.length));
  const top = order.slice(0, k).map((i) => ({ label: names[i], probability: probs[i] }));
  const th = { ...DEFAULT_OOD, ...(metadata.ood || {}) };
  const frac = skinFraction(crop);
  const maxLogit = Math.max(...Array.from(logits));
  const isSkin = frac >= Number(th.skin_fraction_min) && maxLogit >= Number(th.max_logit_min);
  let status = "ok";
  if (!isSkin) status = "not_skin";
  else if (top[0].probability < Number(metadata.abstain_threshold)) status = "uncertain";
  const probabilities = {};
  names.forEach((n, i) => { probabilities[n] = probs[i]; });
  return { status, top_k: top, probabilities, ood: { skin_fraction: frac, max_logit: maxLogit, is_skin: isSkin } };
}
