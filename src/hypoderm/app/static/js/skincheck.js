// Does this look like a photo of skin? The learned check's verdict: hypoderm.inference.skincheck in the browser
// (its score comes from the model's own graph, in the same session.run as the logits).

/** hypoderm.inference.skincheck.skin_check_reason. */
export function skinCheckReason(score, check) {
  if (check === null || score === null) return null;
  if (!Number.isFinite(score) || score < Number(check.threshold)) return "not_skin_like";
  if (score < Number(check.answer_threshold)) return "unsure_skin";
  return null;
}
