// The verdict: hypoderm.inference.verdict in the browser. What one photo's logits and square answer (status) and,
// without an answer, why (reason); the page says it in the words of /static/data/messages.json (i18n.js), which
// `hypoderm predict` and the API use too. tests/parity/test_verdict.py runs this and the Python on the same inputs.

import { REASONS as OOD_REASONS, oodCheck } from "./ood.js";

export const STATUSES = Object.freeze(["ok", "uncertain", "not_skin"]);

/** hypoderm.inference.verdict.REASONS: why there is no answer, and the status each reason gives. */
export const REASONS = Object.freeze({ too_small: "not_skin", ...OOD_REASONS, low_confidence: "uncertain" });

/** softmax(logits / temperature) in doubles, max-subtracted like hypoderm.inference.verdict.softmax. */
export function softmax(logits, temperature) {
  const z = Array.from(logits, (v) => v / temperature);
  const mx = Math.max(...z);
  const e = z.map((v) => Math.exp(v - mx));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** hypoderm.model_quality.CHANCE_MARGIN and abstain_floor: the abstain threshold never falls below chance (1/K)
 * plus this fraction of the way to certainty, so a model at chance answers "uncertain". */
export const CHANCE_MARGIN = 0.25;
export function abstainFloor(numClasses) {
  const chance = 1.0 / Math.max(1, numClasses);
  return chance + CHANCE_MARGIN * (1.0 - chance);
}

/** hypoderm.inference.verdict.answer_threshold: the abstain threshold (never below the floor), raised for a class
 * that metadata.answer_thresholds names. */
export function answerThreshold(metadata, label) {
  const base = Math.max(Number(metadata.abstain_threshold), abstainFloor(metadata.class_names.length));
  const own = metadata.answer_thresholds;
  return own && Object.prototype.hasOwnProperty.call(own, label) ? Math.max(base, Number(own[label])) : base;
}

/** hypoderm.inference.verdict.result_from_logits (messages are localised by the page, not here). `sourceSide`: the
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
  let reason = ood.reason;
  if (sourceSide !== null && sourceSide < Number(metadata.min_source_side)) {
    reason = "too_small";
    ood = { ...ood, is_skin: false, answerable: false, reason };
  }
  if (reason === null && top[0].probability < answerThreshold(metadata, top[0].label)) {
    reason = "low_confidence";
  }
  let status = "ok", answer = null;
  if (reason === null) answer = top[0].label;
  else {
    status = REASONS[reason];
    if (status === "not_skin") top = [];
  }
  const probabilities = {};
  names.forEach((n, i) => { probabilities[n] = probs[i]; });
  return { status, answer, reason, top_k: top, probabilities, ood };
}
