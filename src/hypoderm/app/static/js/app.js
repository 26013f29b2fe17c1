// The page: photo -> crop -> model (in the browser with onnxruntime-web, or on the server) ->
// top-3 with calibrated probabilities, verdict, information card, history on the device.

import { Cropper } from "./crop.js";
import { answerText, candidates, displayName, formatProbability, kindOf, modelLimits } from "./answer.js";
import { overlayDataUrl } from "./gradcam.js";
import * as history from "./history.js";
import { dateText, initialLanguage, language, loadMessages, setLanguage, t, trainingText } from "./i18n.js";
import { prepare, rgbaToRgb } from "./preprocess.js";
import { resultFromLogits } from "./verdict.js";

const $ = (id) => document.getElementById(id);
// `started`: the start-up (model information, then the runtime) as a promise, so that an analysis asked for on
// this phone before the runtime is ready waits for it instead of sending the photo anywhere.
const state = { meta: null, cards: {}, ort: null, session: null, last: null, started: null, download: null,
  waiting: false };
let cropper = null;

class UserError extends Error {}

function show(el, on = true) { el.hidden = !on; }

function setRuntimeNotice(text) {
  const el = $("runtime-notice");
  el.textContent = text || "";
  show(el, Boolean(text));
}

function cardFor(label) {
  const card = state.cards[label];
  return card ? card[language()] || card.en : null;
}

/** People read display names ("Normal skin", "正常皮肤"), never identifiers such as normal_skin. */
function labelName(label) { return displayName(state.cards, label, language()); }

/** Honest rounding: ">99%", never "100%" (see answer.js). */
function pct(p) { return formatProbability(p); }


// ---- start-up -------------------------------------------------------------------------------

async function loadMetadata() {
  const res = await fetch("/api/v1/model");
  if (!res.ok) throw new Error(`/api/v1/model answered ${res.status}`);
  state.meta = await res.json();
  renderModelInfo();
}

// Which model, which classes, and what data it saw: shown under the notice, in both languages.
function renderModelInfo() {
  const m = state.meta;
  if (!m) return;
  // How many photos trained and validated it, per class with display names (i18n.js trainingText, from the metadata).
  const data = trainingText(m.training_data || {}, labelName);
  // A model exported despite failing its quality checks (`export --force`) says so above everything.
  const broken = ((m.quality && m.quality.problems) || []).length > 0;
  $("model-warning").textContent = broken ? t("model_broken") : "";
  show($("model-warning"), broken);
  $("model-info").textContent = t("model_info", {
    name: m.model_name, version: m.version, precision: m.precision,
    classes: m.class_names.map(labelName).join(t("list_sep")), data,
  });
}

async function loadCards() {
  const res = await fetch("/static/data/cards.json");
  state.cards = res.ok ? (await res.json()).cards : {};
}

// ---- runtime and model download -------------------------------------------------------------
// First visit: the WASM runtime and the model (brotli/gzip on the wire, content-hashed URLs cached for a
// year) are fetched here, with progress shown; later visits get them from the service worker's cache.

/**
 * The body of `url` (`size` bytes once decoded) as bytes, with its progress in bytes on the wire in
 * `state.download[url]`: Content-Length is what travels (compressed when the response is), while the body read
 * here is decoded, so the decoded share received times Content-Length is the wire bytes so far.
 */
async function fetchBytes(url, size) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  const wire = Number(res.headers.get("content-length")) || size;
  const progress = (n) => { state.download[url] = { done: wire * Math.min(1, n / Math.max(size, 1)), total: wire }; renderLoading(); };
  progress(0);
  if (!res.body || !res.body.getReader) {
    const whole = new Uint8Array(await res.arrayBuffer());
    progress(size);
    return whole;
  }
  const reader = res.body.getReader();
  const chunks = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    n += value.length;
    progress(n);
  }
  progress(size);
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

/** {done, total, pct} bytes on the wire over the runtime's files being fetched; null until every one answered. */
function downloadProgress() {
  const files = Object.values(state.download || {});
  if (!state.meta || files.length < (state.meta.browser_inference.wasm_url ? 2 : 1)) return null;
  const p = files.reduce((a, f) => ({ done: a.done + Math.min(f.done, f.total), total: a.total + f.total }),
    { done: 0, total: 0 });
  return { ...p, pct: Math.floor(100 * p.done / Math.max(p.total, 1)) };
}

/** What the Analyse button says while an analysis on this phone waits for the runtime. */
function renderWaiting() {
  const p = downloadProgress();
  if (state.waiting) $("analyse").textContent = p ? t("getting_ready_pct", { pct: p.pct }) : t("getting_ready");
}

/** The "getting ready" bar and line, in the MB that actually travel. */
function renderLoading() {
  const p = downloadProgress();
  const bar = $("load-progress");
  const mb = (x) => (x / 1e6).toFixed(1);
  bar.max = p ? Math.max(p.total, 1) : 1;
  bar.value = p ? p.done : 0;
  $("load-status").textContent = p ? t("loading_progress", { done: mb(p.done), total: mb(p.total), pct: p.pct })
    : t("loading_starting");
  show($("loading"));
  renderWaiting();
}

async function startRuntime() {
  const b = state.meta.browser_inference;
  if (!b || !b.available) {
    useServerOnly(t("runtime_missing"));
    return;
  }
  try {
    state.download = {};
    renderLoading();
    // The runtime's loader, its WASM and the model download side by side.
    const [ort, wasm, bytes] = await Promise.all([
      import(b.script),
      b.wasm_url ? fetchBytes(b.wasm_url, b.wasm_bytes || 0) : null,
      fetchBytes(state.meta.model_url, state.meta.model_bytes || 0),
    ]);
    ort.env.wasm.wasmPaths = b.script.slice(0, b.script.lastIndexOf("/") + 1);
    if (wasm) ort.env.wasm.wasmBinary = wasm; // fetched above with progress: onnxruntime-web does not fetch it again
    // Threads need cross-origin isolation (SharedArrayBuffer), which the server's headers give.
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    state.download = null; // downloaded: what remains is starting the runtime
    renderLoading();
    const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
    // INT8-stored weights are dequantised once here (constant folding), so the session runs fp32 kernels
    if (state.meta.precision === "int8-weights") options.extra = { session: { disable_quant_qdq: "1" } };
    state.session = await ort.InferenceSession.create(bytes, options);
    state.ort = ort;
  } catch (err) {
    console.error(err);
    useServerOnly(t("runtime_failed"));
  } finally {
    show($("loading"), false);
  }
}

function useServerOnly(notice) {
  $("mode-browser").disabled = true;
  $("mode-server").checked = true;
  setRuntimeNotice(notice);
}

// ---- photo and crop -------------------------------------------------------------------------

async function onFile(input) {
  const file = input.files && input.files[0];
  input.value = ""; // the same file can be chosen again
  if (!file) return;
  show($("load-error"), false);
  // Analyse waits for the new photo: decoding is asynchronous, and a tap in between would judge the last one.
  const button = $("analyse");
  button.disabled = true;
  try {
    // Same pixels as the server's loader: EXIF orientation applied, no colour-profile conversion.
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none" });
    cropper.load(bitmap);
    show($("crop"));
    show($("result"), false);
    $("crop").scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (err) {
    $("load-error").textContent = t("load_failed");
    show($("load-error"));
  } finally {
    button.disabled = false;
  }
}

// ---- inference ------------------------------------------------------------------------------

/** The framed square (`canvas`; `sourceSide`: its side in the photo's own pixels) through the model on this
 * device. The model sees all of the square (framed preprocessing), and a square under the model's minimum real
 * resolution is refused as too small (a blown-up blur would get a confident-looking answer). */
async function predictInBrowser(canvas, sourceSide) {
  const { width, height } = canvas;
  const rgba = canvas.getContext("2d", { willReadFrequently: true }).getImageData(0, 0, width, height).data;
  const input = state.meta.input;
  const { crop, tensor } = prepare(rgbaToRgb(rgba), width, height, input, true);
  const feeds = { [input.name || "input"]: new state.ort.Tensor("float32", tensor, [1, 3, input.size, input.size]) };
  const out = await state.session.run(feeds);
  const outName = (state.meta.output && state.meta.output.name) || state.session.outputNames[0];
  const check = state.meta.ood && state.meta.ood.skin_check;
  const skinScore = check && out[check.output] ? Number(out[check.output].data[0]) : null;
  const result = resultFromLogits(Array.from(out[outName].data), crop, state.meta, 3, sourceSide, skinScore);
  result.inference = "browser";
  result.gradcam = browserGradcam(canvas, out, result);
  return result;
}

/** The heat map of the answered class from the model's own outputs, on this device (gradcam.js, the one
 * definition). Only an answer has one: an uncertain or refused photo names no class to explain. */
function browserGradcam(canvas, out, result) {
  const cam = state.meta.gradcam;
  const f = cam && out[cam.features], w = cam && out[cam.cam_weights];
  if (!f || !w) return { available: false, reason: "no_gradcam_outputs" };
  if (result.status !== "ok") return { available: false, reason: result.status };
  const k = state.meta.class_names.indexOf(result.answer);
  const image = overlayDataUrl(canvas, f.data, w.data, f.dims.slice(1), k, state.meta.input, true);
  return { available: true, label: result.answer, image };
}

async function predictOnServer(canvas) {
  if (!navigator.onLine) throw new UserError(t("offline_server"));
  // PNG is lossless, so the server sees exactly the framed pixels.
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  const form = new FormData();
  form.append("image", blob, "crop.png");
  let res;
  try {
    // framed: the server, too, runs the model on all of the square (and measures its side for the too-small check)
    res = await fetch("/api/v1/predict?top_k=3&gradcam=true&framed=true", { method: "POST", body: form });
  } catch (err) {
    console.error(err);
    throw new UserError(t("network_error"));
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    // The server's detail is English for developers; people get the message for its error code.
    console.error("server:", res.status, body);
    const key = `err_${body.error}`;
    throw new UserError(t(key) !== key ? t(key) : t("server_error", { code: res.status }));
  }
  return body;
}

function thumbnail(canvas) {
  const c = document.createElement("canvas");
  c.width = c.height = 96;
  c.getContext("2d").drawImage(canvas, 0, 0, 96, 96);
  return c.toDataURL("image/jpeg", 0.8);
}

/** "On this phone" is a promise that the photo stays here: wait for the runtime (the button says it is getting
 * ready, with the download's progress), and if it cannot start, send nothing and ask. */
async function waitForRuntime() {
  state.waiting = true;
  renderWaiting();
  try {
    await state.started.catch(() => {}); // a failed start-up is said below, as for a runtime that cannot start
  } finally {
    state.waiting = false;
  }
  if (!state.session) throw new UserError(t("runtime_failed_nothing_sent"));
}

async function analyse() {
  if (!cropper.bitmap) return;
  const button = $("analyse");
  button.disabled = true;
  show($("analyse-error"), false);
  try {
    const onPhone = $("mode-browser").checked; // read once: the choice made when Analyse was tapped
    if (onPhone && !state.session) await waitForRuntime();
    button.textContent = t("analysing");
    const canvas = cropper.cropCanvas(state.meta.input);
    const t0 = performance.now();
    const result = onPhone ? await predictInBrowser(canvas, cropper.box().side) : await predictOnServer(canvas);
    result.ms = Math.round(performance.now() - t0);
    state.last = result;
    renderResult();
    await history.addCase({
      date: new Date().toISOString(), thumbnail: thumbnail(canvas), inference: result.inference,
      model: `${state.meta.model_name} ${state.meta.version}`,
      // A rejected photo is stored as "not analysed" with its reason: no class, no probabilities.
      result: result.status === "not_skin" ? { status: "not_skin", reason: result.reason, ood: result.ood }
        : { status: result.status, reason: result.reason, top_k: result.top_k, probabilities: result.probabilities,
          ood: result.ood },
    });
    await renderHistory();
  } catch (err) {
    console.error(err);
    $("analyse-error").textContent = err instanceof UserError ? err.message : t("unexpected_error");
    show($("analyse-error"));
    if (state.last && !$("result").hidden) { state.last.stale = true; renderResult(); }
  } finally {
    button.disabled = false;
    button.textContent = t("analyse");
  }
}

// ---- rendering ------------------------------------------------------------------------------

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

function renderResult() {
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

async function renderHistory() {
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

// ---- wiring ---------------------------------------------------------------------------------

function applyLanguage(lang) {
  setLanguage(lang);
  $("lang-switch").textContent = t("switch_to");
  renderModelInfo();
  if (!$("result").hidden) renderResult(); // not a result hidden for a newly chosen photo
  renderHistory();
}

async function main() {
  cropper = new Cropper($("crop-canvas"), $("zoom"));
  applyLanguage(initialLanguage());
  $("lang-switch").addEventListener("click", () => applyLanguage(language() === "zh" ? "en" : "zh"));
  $("camera-input").addEventListener("change", (e) => onFile(e.target));
  $("file-input").addEventListener("change", (e) => onFile(e.target));
  $("analyse").addEventListener("click", analyse);
  $("history-export").addEventListener("click", () => history.exportCases());
  $("history-clear").addEventListener("click", async () => {
    if (confirm(t("confirm_delete_all"))) { await history.clearCases(); await renderHistory(); }
  });
  state.started = (async () => {
    await Promise.all([loadMetadata(), loadCards(), loadMessages()]);
    applyLanguage(language());
    await startRuntime();
  })();
  try {
    await state.started;
  } catch (err) {
    console.error(err);
    setRuntimeNotice(t("start_failed"));
  }
  // Registered after the runtime and model have arrived: the worker's precache then takes them from the
  // HTTP cache (immutable URLs) instead of downloading them a second time on the first visit.
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((err) => console.error("service worker:", err));
  }
  document.body.dataset.ready = state.session ? "browser" : "server";
}

main();
