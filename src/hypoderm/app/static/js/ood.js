// Is this a skin photo, and can it be judged? hypoderm.inference.ood in the browser (the skin-colour floor, the
// not-skin gate, the max-logit floor), same arithmetic: the same crop gives the same statistics, score and reason.

import { resizeBilinear } from "./preprocess.js";
import { skinCheckReason } from "./skincheck.js";

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

/** hypoderm.inference.ood.REASONS: oodCheck's reasons, with the status each gives (with the verdict's own:
 * verdict.js REASONS). */
export const REASONS = Object.freeze({ too_dark: "not_skin", little_skin: "not_skin", not_skin_like: "not_skin",
  unsure_skin: "uncertain", unusual_logits: "uncertain" });

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
    is_skin: REASONS[reason] !== "not_skin", answerable: reason === null, reason };
}
