// What the page shows: the result (verdict, ranked classes, heat map, the model's limits, information
// cards) and the history of past cases on this device.

import { answerText, candidates, kindOf, modelLimits } from "./answer.js";
import * as history from "./history.js";
import { dateText, language, t } from "./i18n.js";
import { $, labelName, pct, show, state } from "./page.js";

function cardFor(label) {
  const card = state.cards[label];
  return card ? card[language()] || card.en : null;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function renderCard(target, label, outsideModel) {
  target.replaceChildren();
  const card = cardFor(label);
  if (!card) {
    target.append(el("p", { class: "meta" }, t("no_card", { label: labelName(label) })));
    return;
  }
  target.append(el("h3", {}, card.name));
  if (outsideModel) target.append(el("span", { class: "badge" }, t("not_in_model")));
  for (const [key, field] of [["card_what", "what"], ["card_looks", "looks"], ["card_apart", "apart"]]) {
    target.append(el("h4", {}, t(key)), el("p", {}, card[field]));
  }
  target.append(el("div", { class: "doctor" }, el("h4", {}, t("card_doctor")), el("p", {}, card.doctor)));
}

/** The verdict line: the answer (worded by its card when the class is not a condition, e.g. other_lesion: never
 * a diagnosis of a named lesion), or why there is none (the reason code, never a skin-colour share). */
function verdictText(r) {
  if (r.status !== "ok") return t(`verdict_${r.reason}`, { min: state.meta.min_source_side });
  const top = r.top_k[0];
  return answerText(state.cards, top.label, top.probability, language())
    || t("status_ok", { label: labelName(top.label), p: pct(top.probability) });
}

export function renderResult() {
  const r = state.last;
  if (!r) return;
  const section = $("result");
  section.dataset.status = r.status;
  section.dataset.reason = r.reason || "";
  section.dataset.inference = r.inference;
  section.dataset.probabilities = JSON.stringify(r.probabilities);
  section.dataset.skinFraction = String(r.ood.skin_fraction);
  section.dataset.skinScore = r.ood.skin_score === null || r.ood.skin_score === undefined ? "" : String(r.ood.skin_score);
  renderResultNote(r);
  const analysed = r.status !== "not_skin";
  const top = analysed ? r.top_k[0] : null;
  const verdict = $("verdict");
  verdict.className = `verdict ${r.status}`;
  verdict.textContent = verdictText(r);
  // Not analysed or uncertain: say what to do, before anything else.
  $("advice").textContent = r.status === "ok" ? "" : t(`advice_${r.reason}`);
  show($("advice"), r.status !== "ok");
  // The model could not choose: its candidates as equals (alphabetical, no numbers, no bars). Not when it may not
  // be skin at all: the classes would then not apply.
  const undecided = r.reason === "low_confidence";
  show($("candidates"), undecided);
  $("candidate-list").replaceChildren(...(undecided ? candidates(state.cards, r.top_k, language()) : [])
    .map((name) => el("li", {}, name)));
  // Only an answer ("ok") shows the ranked classes with their probabilities.
  const ranked = r.status === "ok" ? r.top_k : [];
  $("topk").replaceChildren(...ranked.map((k) => el("li", { "data-label": k.label, "data-probability": String(k.probability) },
    el("div", { class: "row" }, el("span", {}, labelName(k.label)), el("strong", {}, pct(k.probability))),
    el("div", { class: "track" }, bar(k.probability)))));
  $("result-meta").textContent = r.past ? t("past_meta", { where: t(r.inference === "browser" ? "where_browser" : "where_server") })
    : t("result_meta", { where: t(r.inference === "browser" ? "where_browser" : "where_server"), ms: r.ms ?? "?" });
  renderGradcam(r);
  renderLimits(analysed ? (r.status === "ok" ? top.label : null) : undefined);
  if (r.status === "ok") renderCard($("info-card"), top.label, false);
  else $("info-card").replaceChildren();
  show($("info-card"), r.status === "ok");
  // Look-alikes: the hypopigmented conditions outside the model (other_lesion is a class, not a look-alike).
  const classes = new Set(state.meta.class_names);
  const others = analysed ? Object.keys(state.cards).filter((id) => !classes.has(id) && kindOf(state.cards, id) === "condition") : [];
  $("lookalike-cards").replaceChildren(...others.map((id) => {
    const box = el("article", { class: "info", "data-card": id });
    renderCard(box, id, true);
    return box;
  }));
  show($("lookalikes"), others.length > 0);
  show(section);
}

/** A result that is not this photo's says so above everything: one reopened from the history (with its photo
 * and time), or the one still on screen after an analysis failed. */
function renderResultNote(r) {
  const section = $("result");
  section.dataset.past = r.past ? "true" : "";
  section.dataset.stale = r.stale ? "true" : "";
  section.classList.toggle("stale", Boolean(r.stale));
  $("result-note-text").textContent = r.stale ? t("stale_result")
    : r.past ? t("past_result", { when: dateText(r.past.date, language()) }) : "";
  const img = $("result-note-img");
  if (r.past && !r.stale) img.src = r.past.thumbnail; else img.removeAttribute("src");
  show(img, Boolean(r.past && !r.stale));
  show($("result-note"), Boolean(r.past || r.stale));
}

/** A case from the history shown again as the result, marked as a past one. Older cases may lack a reason. */
function reopen(c) {
  const r = c.result;
  const reason = r.reason || (r.status === "uncertain" ? "low_confidence" : r.status === "not_skin" ? "not_skin_like" : null);
  state.last = { ...r, reason, top_k: r.top_k || [], probabilities: r.probabilities || {}, ood: r.ood || {},
    answer: r.status === "ok" && r.top_k ? r.top_k[0].label : null, inference: c.inference,
    past: { date: c.date, thumbnail: c.thumbnail, id: c.id } };
  renderResult();
  $("result").scrollIntoView({ behavior: "smooth", block: "start" });
}

/** The heat map only next to an answer, captioned with the class it explains: an uncertain answer names no
 * class, so a map of its hidden top class would say more than the answer does. */
function renderGradcam(r) {
  const cam = r.gradcam;
  const on = r.status === "ok" && Boolean(cam && cam.available) && cam.label === r.answer;
  show($("gradcam"), on);
  if (on) {
    $("gradcam-img").src = cam.image;
    $("gradcam-caption").textContent = t("gradcam_caption", { label: labelName(cam.label) });
  }
  const off = $("gradcam-off");
  off.textContent = r.status === "ok" && cam && !cam.available ? t("gradcam_off") : "";
  show(off, Boolean(off.textContent));
}

/**
 * The model's limits, next to the answer: which classes it knows and, from its class list, the
 * conditions it would force into them with the examination that tells each apart. `label`: the
 * answered class; null for an uncertain answer; undefined hides the box (photo not analysed).
 */
function renderLimits(label) {
  const box = $("limits");
  if (label === undefined) { show(box, false); return; }
  const lim = modelLimits(state.cards, state.meta.class_names, language());
  $("limits-known").textContent = t("limits_known", { classes: lim.known.join(t("list_sep")) });
  const kind = label ? kindOf(state.cards, label) : null;
  const why = { condition: "limits_condition", normal: "limits_normal", other: "limits_other" }[kind] || "limits_generic";
  $("limits-why").textContent = lim.unknown.length ? t(why, { label: labelName(label) }) : "";
  $("limits-list").replaceChildren(...lim.unknown.map((u) => el("li", { "data-card": u.id },
    el("strong", {}, u.name), document.createTextNode(`${t("exam_sep")}${u.exam}`))));
  show(box);
}

function bar(p) {
  // Through the CSSOM: our CSP blocks inline style attributes.
  const fill = el("div", { class: "fill" });
  fill.style.width = `${(100 * p).toFixed(1)}%`;
  return fill;
}

export async function renderHistory() {
  let cases = [];
  try { cases = await history.listCases(); } catch (err) { console.error(err); }
  const list = $("history-list");
  list.replaceChildren(...cases.map((c) => {
    const r = c.result;
    const top = r.top_k && r.top_k[0];
    const what = r.status === "not_skin" ? t("status_not_skin", { why: t(`why_${r.reason || "not_skin_like"}`) })
      : r.status === "uncertain" || !top ? t("status_uncertain") : `${labelName(top.label)} · ${pct(top.probability)}`;
    const when = dateText(c.date, language());
    const del = el("button", { type: "button", "aria-label": t("delete_one") }, t("delete_one"));
    del.addEventListener("click", async () => { await history.deleteCase(c.id); await renderHistory(); });
    // The photo and its answer are one button: tapping it shows that result again
    const open = el("button", { type: "button", class: "open", "aria-label": t("history_open", { what, when }) },
      el("img", { src: c.thumbnail, alt: "" }), el("div", { class: "what" }, el("div", {}, what),
        el("div", { class: "when" }, when)));
    open.addEventListener("click", () => reopen(c));
    return el("li", { "data-id": String(c.id) }, open, del);
  }));
  show($("history-empty"), cases.length === 0);
  show($("history-export"), cases.length > 0); // nothing to export or delete on an empty list
  show($("history-clear"), cases.length > 0);
}
