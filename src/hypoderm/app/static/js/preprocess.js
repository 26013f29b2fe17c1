// Browser preprocessing, OOD check (skin rule + not-skin gate) and verdict: a bit-exact port of the Python inference path
// (hypoderm.inference.preprocess, hypoderm.inference.ood, hypoderm.inference.result_from_logits), so that the same
// pixels give the same tensor in the browser and on the server.
//
// Resize = Pillow's bilinear resampling (ImagingResample: separable triangle filter widened by the
// downscale factor, i.e. antialiased; 22-bit fixed-point weights; horizontal pass, clip to 8 bits,
// then vertical pass); reduce = Pillow's Image.reduce (box average, its integer arithmetic). Canvas
// drawImage would give different pixels, hence this port. The rule they implement (the square rule, one for
// every entry point) is written out in hypoderm/inference/preprocess.py.

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
  return { ksize, bounds, kk: Int32Array.from(kk) };
}

function clip8(v) {
  if (v >= ONE * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / ONE);
}

// Both passes compute only a window of their output (x0..x0+nx, y0..y0+ny): each output pixel depends only
// on its own coefficients, so a window is bit-identical to the same pixels of the full resize.
function resampleHorizontal(src, w, h, outW, x0 = 0, nx = outW, y0 = 0, ny = h) {
  const { ksize, bounds, kk } = coefficients(w, outW);
  const out = new Uint8ClampedArray(nx * ny * 3);
  for (let y = 0; y < ny; y++) {
    const row = (y0 + y) * w;
    for (let xx = 0; xx < nx; xx++) {
      const xmin = bounds[(x0 + xx) * 2], xmax = bounds[(x0 + xx) * 2 + 1], k = (x0 + xx) * ksize;
      let r = HALF, g = HALF, b = HALF;
      for (let x = 0, i = (row + xmin) * 3; x < xmax; x++, i += 3) {
        const c = kk[k + x];
        r += src[i] * c; g += src[i + 1] * c; b += src[i + 2] * c;
      }
      const o = (y * nx + xx) * 3;
      out[o] = clip8(r); out[o + 1] = clip8(g); out[o + 2] = clip8(b);
    }
  }
  return out;
}

// `src` holds input rows from `srcY0` on (a horizontal pass may have computed only those).
function resampleVertical(src, w, h, outH, y0 = 0, ny = outH, srcY0 = 0) {
  const { ksize, bounds, kk } = coefficients(h, outH);
  const out = new Uint8ClampedArray(w * ny * 3);
  const stride = w * 3;
  for (let yy = 0; yy < ny; yy++) {
    const ymin = bounds[(y0 + yy) * 2] - srcY0, ymax = bounds[(y0 + yy) * 2 + 1], k = (y0 + yy) * ksize;
    for (let xx = 0; xx < w; xx++) {
      let r = HALF, g = HALF, b = HALF;
      for (let y = 0, i = ymin * stride + xx * 3; y < ymax; y++, i += stride) {
        const c = kk[k + y];
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

/** The size resize_shorter gives: shorter side -> resizeSize, the other by Python round() (unchanged when the
 * shorter side already is resizeSize). */
export function resizedSize(w, h, resizeSize) {
  if (Math.min(w, h) === resizeSize) return { width: w, height: h };
  if (w <= h) return { width: resizeSize, height: Math.max(1, roundHalfEven((h * resizeSize) / w)) };
  return { width: Math.max(1, roundHalfEven((w * resizeSize) / h)), height: resizeSize };
}

/** hypoderm.inference.preprocess.resize_shorter: shorter side -> resizeSize, the other by Python round(). */
export function resizeShorter(rgb, w, h, resizeSize) {
  const { width: nw, height: nh } = resizedSize(w, h, resizeSize);
  if (nw === w && nh === h) return { data: rgb, width: w, height: h };
  return { data: resizeBilinear(rgb, w, h, nw, nh), width: nw, height: nh };
}

/** The side x side square at (left, top) of a packed RGB image w pixels wide. */
function cropSquare(rgb, w, left, top, side) {
  const out = new Uint8ClampedArray(side * side * 3);
  for (let y = 0; y < side; y++) {
    const from = ((top + y) * w + left) * 3;
    out.set(rgb.subarray(from, from + side * 3), y * side * 3);
  }
  return out;
}

/** hypoderm.inference.preprocess.center_crop_array on packed RGB. */
export function centerCrop(rgb, w, h, size) {
  return cropSquare(rgb, w, roundHalfEven((w - size) / 2.0), roundHalfEven((h - size) / 2.0), size);
}

/** hypoderm.inference.preprocess.normalize_uint8: HWC uint8 -> CHW float32, float32 arithmetic like numpy.
 * A pixel has 256 possible values per channel, so each is computed once into a table (same arithmetic). */
export function normalize(crop, size, mean, std) {
  const f = Math.fround;
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const m = f(mean[c]), s = f(std[c]);
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = f(f(f(v / 255.0) - m) / s);
    const dst = out.subarray(c * plane, (c + 1) * plane);
    for (let i = 0, j = c; i < plane; i++, j += 3) dst[i] = lut[crop[j]];
  }
  return out;
}

// ---- The square rule (hypoderm.inference.preprocess, steps 2-4) -----------------------------------------------

// hypoderm.inference.preprocess.DRAFT_REDUCING_GAP: the rule's box reduction works in units of 2 x resize_size.
const REDUCING_GAP = 2.0;

/** hypoderm.inference.preprocess.reduce_factor: the whole factor a square (or photo) with this shorter side is
 * box-reduced by, 1 when it is not. */
export function reduceFactor(shorterSide, input) {
  return Math.max(1, Math.floor(shorterSide / roundHalfEven(REDUCING_GAP * Number(input.resize_size))));
}

/** Pillow's division_UINT32(n, 8): (UINT32)(float(2^32) / float(256 n)), float32 arithmetic. */
function reduceMultiplier(n) {
  return Math.trunc(Math.fround(Math.fround(4294967296) / Math.fround(256 * n)));
}

/**
 * Pillow's `Image.reduce(factor)` (ImagingReduce: box average, boxes from the top-left corner, the last row and
 * column of boxes averaging what is left) on `rows` rows of pixels with `channels` bytes each (3: packed RGB,
 * 4: canvas RGBA, alpha ignored), writing packed RGB output rows from `outRow` on into `out` (outW pixels wide).
 * Every box of n pixels gives ((sum + n / 2) * multiplier(n)) >> 24, Pillow's own integer arithmetic. Called on
 * whole strips whose row count is a multiple of `factor` (but the last), it is bit-identical to one call.
 */
export function reduceRowsInto(src, w, rows, channels, factor, out, outW, outRow) {
  const stride = w * channels;
  for (let by = 0; by * factor < rows; by++) {
    const y0 = by * factor, ny = Math.min(factor, rows - y0);
    for (let bx = 0; bx < outW; bx++) {
      const x0 = bx * factor, nx = Math.min(factor, w - x0), n = nx * ny;
      const mult = reduceMultiplier(n), amend = Math.floor(n / 2);
      let r = 0, g = 0, b = 0;
      for (let y = y0; y < y0 + ny; y++) {
        for (let x = x0, i = y * stride + x0 * channels; x < x0 + nx; x++, i += channels) {
          r += src[i]; g += src[i + 1]; b += src[i + 2];
        }
      }
      // (sum + amend) * mult < 2^32 (Pillow's UINT32 never wraps): exact in doubles, then >> 24
      const o = ((outRow + by) * outW + bx) * 3;
      out[o] = Math.floor(((r + amend) * mult) / 16777216);
      out[o + 1] = Math.floor(((g + amend) * mult) / 16777216);
      out[o + 2] = Math.floor(((b + amend) * mult) / 16777216);
    }
  }
}

/** hypoderm.inference.preprocess.reduced (step 2) on packed RGB: {data, width, height}. */
export function reduceImage(rgb, w, h, input) {
  const factor = reduceFactor(Math.min(w, h), input);
  if (factor === 1) return { data: rgb, width: w, height: h };
  const outW = Math.ceil(w / factor), outH = Math.ceil(h / factor);
  const out = new Uint8ClampedArray(outW * outH * 3);
  reduceRowsInto(rgb, w, h, 3, factor, out, outW, 0);
  return { data: out, width: outW, height: outH };
}

/** hypoderm.inference.preprocess.square_uint8 (steps 2-3): reduce, shorter side -> resize_size, the centre square
 * of that resized straight to size x size. */
export function squareCrop(rgb, w, h, input) {
  const small = reduceImage(rgb, w, h, input);
  const r = resizeShorter(small.data, small.width, small.height, input.resize_size);
  const side = Math.min(r.width, r.height);
  const square = r.width === r.height ? r.data : centerCrop(r.data, r.width, r.height, side);
  return side === input.size ? square : resizeBilinear(square, side, side, input.size, input.size);
}

/** Everything before the model (hypoderm.inference.prepare): the square rule, whose uint8 square the not-skin
 * check scores too, and the input tensor. `framed` changes nothing since issue 29 (one rule for every square). */
export function prepare(rgb, w, h, input, framed = false) {
  if ((input.interpolation || "bilinear") !== "bilinear") {
    throw new Error(`unsupported interpolation ${input.interpolation}`);
  }
  if ((input.crop ?? "square") !== "square") throw new Error(`unsupported crop rule ${input.crop}`);
  const crop = squareCrop(rgb, w, h, input);
  return { crop, tensor: normalize(crop, input.size, input.mean, input.std) };
}

// The first gate format's constants (a hypoderm-gate/1 block carries neither block size nor skin rule).
const V1_BLOCK = 16;
const V1_SKIN_RULE = { cr: [133.0, 173.0], cb: [77.0, 127.0] };

/** (block side, skin rule) of a gate block (hypoderm.inference.ood._gate_rule). */
function gateRule(gate) {
  return { block: Number(gate.block ?? V1_BLOCK), rule: gate.skin_rule || V1_SKIN_RULE };
}

/** hypoderm.inference.ood.skin_fraction: the YCrCb rule `rule`, double arithmetic like numpy float64. */
export function skinFraction(crop, rule) {
  const n = crop.length / 3;
  const [crLo, crHi] = rule.cr, [cbLo, cbHi] = rule.cb;
  let skin = 0;
  for (let i = 0; i < n; i++) {
    const r = crop[i * 3], g = crop[i * 3 + 1], b = crop[i * 3 + 2];
    const y = 0.299 * r + 0.587 * g + 0.114 * b;
    const cr = 128.0 + 0.713 * (r - y);
    const cb = 128.0 + 0.564 * (b - y);
    if (cr >= crLo && cr <= crHi && cb >= cbLo && cb <= cbHi) skin++;
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

// ---- The not-skin gate: hypoderm.inference.ood.gate_features / gate_score / ood_check, same arithmetic --------
// Only + - * / and Math.sqrt (correctly rounded, like numpy), and every sum is taken one term after
// another in the order of the Python module docstring (blocks row-major, pixels in a block
// row-major), which hypoderm.inference.ood reproduces with cumulative sums: the same pixels give the same bits.
// Every constant (crop size, block size, skin-colour rule, thresholds) comes from the gate block.

function sdOverMean(values) {
  const n = values.length;
  let s = 0, s2 = 0;
  for (let i = 0; i < n; i++) s += values[i];
  for (let i = 0; i < n; i++) s2 += values[i] * values[i];
  const mean = s / n;
  if (mean <= 0.0) return 0.0;
  return Math.sqrt(Math.max(0.0, s2 / n - mean * mean)) / mean;
}

/** hypoderm.inference.ood.gate_features on a packed RGB crop of width x height pixels, with `gate`'s block size
 * and skin rule. */
export function gateFeatures(crop, width, height, gate) {
  const { block: B, rule } = gateRule(gate);
  const [crLo, crHi] = rule.cr, [cbLo, cbHi] = rule.cb;
  const nby = Math.floor(height / B), nbx = Math.floor(width / B);
  if (nby < 2 || nbx < 2) throw new Error(`image too small for the not-skin gate: ${width}x${height}`);
  const H = nby * B, W = nbx * B, nb = nby * nbx, area = B * B;
  const Y = new Float64Array(H * W), CR = new Float64Array(H * W), CB = new Float64Array(H * W);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * width + x) * 3, r = crop[i], g = crop[i + 1], b = crop[i + 2];
      const yy = 0.299 * r + 0.587 * g + 0.114 * b;
      Y[y * W + x] = yy;
      CR[y * W + x] = 128.0 + 0.713 * (r - yy);
      CB[y * W + x] = 128.0 + 0.564 * (b - yy);
    }
  }
  const K = 18;
  const bs = Array.from({ length: K }, () => new Float64Array(nb));
  const p = new Float64Array(K);
  for (let by = 0; by < nby; by++) {
    for (let bx = 0; bx < nbx; bx++) {
      const blk = by * nbx + bx;
      p.fill(0);
      for (let yi = 0; yi < B; yi++) {
        const y = by * B + yi;
        for (let xi = 0; xi < B; xi++) {
          const x = bx * B + xi, j = y * W + x;
          const yv = Y[j], cr = CR[j], cb = CB[j];
          const s = cr >= crLo && cr <= crHi && cb >= cbLo && cb <= cbHi ? 1.0 : 0.0;
          const u = cb - 128.0, v = cr - 128.0;
          const gx = x + 1 < W ? Y[j + 1] - yv : 0.0;
          const gy = y + 1 < H ? Y[j + W] - yv : 0.0;
          const hx = x + 2 < W ? Y[j + 2] - yv : 0.0;
          const hy = y + 2 < H ? Y[j + 2 * W] - yv : 0.0;
          p[0] += s; p[1] += u; p[2] += v; p[3] += Math.sqrt(u * u + v * v);
          p[4] += s * cr; p[5] += s * cb; p[6] += s * cr * cr; p[7] += s * cb * cb;
          p[8] += s * yv; p[9] += s * yv * yv; p[10] += yv; p[11] += yv * yv;
          p[12] += s * yv * cr; p[13] += s * yv * cb;
          p[14] += gx * gx; p[15] += gy * gy; p[16] += gx * gy; p[17] += hx * hx + hy * hy;
        }
      }
      for (let k = 0; k < K; k++) bs[k][blk] = p[k];
    }
  }
  const t = bs.map((a) => { let acc = 0; for (let i = 0; i < nb; i++) acc += a[i]; return acc; });
  const [tS, tU, tV, tM, tCr, tCb, tCr2, tCb2, tYs, tY2s, tY, tY2, tYcr, tYcb, tGxx, tGyy, tGxy, tH] = t;
  const n = H * W;
  const f = { skin_fraction: tS / n };
  f.hue_coherence = tM > 0.0 ? Math.sqrt(tU * tU + tV * tV) / tM : 0.0;
  if (tS > 0.0) {
    const mcr = tCr / tS, mcb = tCb / tS, my = tYs / tS;
    const vcr = Math.max(0.0, tCr2 / tS - mcr * mcr);
    const vcb = Math.max(0.0, tCb2 / tS - mcb * mcb);
    const vy = Math.max(0.0, tY2s / tS - my * my);
    f.skin_cr = mcr; f.skin_cb = mcb;
    f.skin_chroma_sd = Math.sqrt(vcr + vcb);
    f.skin_luma_sd = Math.sqrt(vy);
    f.skin_y_cr_corr = vy * vcr > 0.0 ? (tYcr / tS - my * mcr) / Math.sqrt(vy * vcr) : 0.0;
    f.skin_y_cb_corr = vy * vcb > 0.0 ? (tYcb / tS - my * mcb) / Math.sqrt(vy * vcb) : 0.0;
  } else {
    Object.assign(f, { skin_cr: 128.0, skin_cb: 128.0, skin_chroma_sd: 0.0, skin_luma_sd: 0.0,
      skin_y_cr_corr: 0.0, skin_y_cb_corr: 0.0 });
  }
  const e = tGxx + tGyy;
  f.grad_rms = Math.sqrt(e / n);
  f.smooth_ratio = e > 0.0 ? Math.sqrt(tH / e) / 2.0 : 1.0;
  f.orient_global = e > 0.0 ? Math.sqrt((tGxx - tGyy) * (tGxx - tGyy) + 4.0 * tGxy * tGxy) / e : 0.0;
  let sumE = 0, sumCoh = 0, skinBlocks = 0;
  const gb = new Float64Array(nb), lb = new Float64Array(nb);
  for (let i = 0; i < nb; i++) {
    const gxx = bs[14][i], gyy = bs[15][i], gxy = bs[16][i];
    sumE += gxx + gyy;
    sumCoh += Math.sqrt((gxx - gyy) * (gxx - gyy) + 4.0 * gxy * gxy);
    if (bs[0][i] >= area / 2) skinBlocks += 1.0;
    gb[i] = Math.sqrt((gxx + gyy) / area);
    lb[i] = bs[10][i] / area;
  }
  f.orient_block = sumE > 0.0 ? sumCoh / sumE : 0.0;
  f.skin_blocks = skinBlocks / nb;
  f.texture_cv = sdOverMean(gb);
  f.chroma_mean = tM / n;
  const meanY = tY / n;
  f.luma_sd = Math.sqrt(Math.max(0.0, tY2 / n - meanY * meanY));
  f.block_luma_cv = sdOverMean(lb);
  f.luma_mean = meanY;
  return f;
}

/** hypoderm.inference.ood.gate_score: bias + linear terms + pairwise terms over gate.features, in this order. */
export function gateScore(features, gate) {
  const roots = new Set(gate.sqrt_features || []);
  const z = gate.features.map((name, i) => {
    const x = roots.has(name) ? Math.sqrt(Math.max(0.0, features[name])) : features[name];
    return (x - Number(gate.mean[i])) / Number(gate.scale[i]);
  });
  let score = Number(gate.bias);
  for (let i = 0; i < z.length; i++) score += Number(gate.linear[i]) * z[i];
  let k = 0;
  for (let i = 0; i < z.length; i++) {
    for (let j = i; j < z.length; j++) { score += Number(gate.quadratic[k]) * (z[i] * z[j]); k++; }
  }
  return score;
}

export const REFUSAL_REASONS = ["too_small", "too_dark", "little_skin", "not_skin_like"];
export const WITHHOLD_REASONS = ["unsure_skin", "unusual_logits"];

/** hypoderm.inference.ood.ood_check. `ood` is the server's completed block (/api/v1/model sends the default
 * gate for models exported before it existed); `gate: null` switches the gate off. */
export function oodCheck(crop, size, logits, ood, skinScore = null) {
  const th = ood || {};
  const gate = th.gate || null;
  const maxLogit = Math.max(...Array.from(logits));
  let frac, luma = null, score = null;
  if (gate) {
    // the gate's statistics are defined at gate.size pixels: another crop is resized like Pillow does
    const gs = Number(gate.size);
    const f = gateFeatures(size === gs ? crop : resizeBilinear(crop, size, size, gs, gs), gs, gs, gate);
    frac = f.skin_fraction;
    luma = f.luma_mean;
    score = gateScore(f, gate);
  } else {
    frac = skinFraction(crop, V1_SKIN_RULE);
  }
  // the learned skin check (hypoderm.inference.skincheck): a photo it passes is never refused by the statistics
  const check = skinScore !== null && th.skin_check ? th.skin_check : null;
  const learned = skinCheckReason(skinScore, check);
  let stats = null;
  if (gate && score < Number(gate.threshold)) stats = check === null || learned !== null ? "not_skin_like" : "unsure_skin";
  else if (gate && score < Number(gate.answer_threshold ?? gate.threshold)) stats = "unsure_skin";
  let reason = null;
  if (gate && luma < Number(gate.luma_min ?? -1)) reason = "too_dark";
  else if (frac < Number(th.skin_fraction_min)) reason = "little_skin";
  else if (learned === "not_skin_like" || stats === "not_skin_like") reason = "not_skin_like";
  else if (learned === "unsure_skin" || stats === "unsure_skin") reason = "unsure_skin";
  else if (maxLogit < Number(th.max_logit_min)) reason = "unusual_logits";
  return { skin_fraction: frac, gate_score: score, skin_score: skinScore, max_logit: maxLogit, luma_mean: luma,
    is_skin: !REFUSAL_REASONS.includes(reason), answerable: reason === null, reason };
}

/** hypoderm.inference.skincheck.skin_check_reason. */
export function skinCheckReason(score, check) {
  if (check === null || score === null) return null;
  if (!Number.isFinite(score) || score < Number(check.threshold)) return "not_skin_like";
  if (score < Number(check.answer_threshold)) return "unsure_skin";
  return null;
}

/** hypoderm.model_quality.CHANCE_MARGIN and abstain_floor: the abstain threshold never falls below chance (1/K)
 * plus this fraction of the way to certainty, so a model at chance answers "uncertain". */
export const CHANCE_MARGIN = 0.25;
export function abstainFloor(numClasses) {
  const chance = 1.0 / Math.max(1, numClasses);
  return chance + CHANCE_MARGIN * (1.0 - chance);
}

/** hypoderm.inference.result_from_logits (messages are localised by the page, not here). `sourceSide`: the
 * shorter side of the framed square in the photo's own pixels; below metadata.min_source_side it is too small. */
export function resultFromLogits(logits, crop, metadata, topK = 3, sourceSide = null, skinScore = null) {
  const names = metadata.class_names;
  if (logits.length !== names.length) {
    throw new Error(`model gives ${logits.length} outputs but metadata names ${names.length} classes`);
  }
  const probs = softmax(logits, Number(metadata.temperature));
  const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
  const k = Math.max(1, Math.min(topK, names.length));
  let top = order.slice(0, k).map((i) => ({ label: names[i], probability: probs[i] }));
  let ood = oodCheck(crop, Math.round(Math.sqrt(crop.length / 3)), logits, metadata.ood, skinScore);
  if (sourceSide !== null && sourceSide < Number(metadata.min_source_side)) {
    ood = { ...ood, is_skin: false, answerable: false, reason: "too_small" };
  }
  let status = "ok", reason = ood.reason, answer = null;
  if (REFUSAL_REASONS.includes(reason)) { status = "not_skin"; top = []; }
  else if (reason !== null) status = "uncertain";
  else if (top[0].probability < Math.max(Number(metadata.abstain_threshold), abstainFloor(names.length))) { status = "uncertain"; reason = "low_confidence"; }
  else answer = top[0].label;
  const probabilities = {};
  names.forEach((n, i) => { probabilities[n] = probs[i]; });
  return { status, answer, reason, top_k: top, probabilities, ood };
}
