// The square rule in the browser: a bit-exact port of hypoderm.inference.preprocess (its twin: each module of
// static/js mirrors the Python module of the same name in hypoderm/inference), so that the same pixels give the
// same tensor in the browser and on the server.
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
