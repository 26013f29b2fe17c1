// The page: photo -> crop -> model (in the browser with onnxruntime-web, or on the server) ->
// top-3 with calibrated probabilities, verdict, information card, history on the device.

import { Cropper } from "./crop.js";
import * as history from "./history.js";
import { initialLanguage, language, setLanguage, t } from "./i18n.js";
import { prepare, resultFromLogits, rgbaToRgb } from "./preprocess.js";

const $ = (id) => document.getElementById(id);
const state = { meta: null, cards: {}, ort: null, session: null, last: null };
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

function labelName(label) {
  const card = cardFor(label);
  return card ? card.name : label.replace(/_/g, " ");
}

function pct(p) { return `${(100 * p).toFixed(1)}%`; }

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
  const data = (m.training_data && m.training_data.summary) || t("not_recorded");
  $("model-info").textContent = t("model_info", {
    name: m.model_name, version: m.version, precision: m.precision,
    classes: m.class_names.map(labelName).join(", "), data,
  });
}

async function loadCards() {
  const res = await fetch("/static/data/cards.json");
  state.cards = res.ok ? (await res.json()).cards : {};
}

async function startRuntime() {
  const b = state.meta.browser_inference;
  if (!b || !b.available) {
    useServerOnly(t("runtime_missing"));
    return;
  }
  try {
    const ort = await import(b.script);
    ort.env.wasm.wasmPaths = b.script.slice(0, b.script.lastIndexOf("/") + 1);
    // Threads need cross-origin isolation (SharedArrayBuffer), which the server's headers give.
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    const bytes = new Uint8Array(await (await fetch(state.meta.model_url)).arrayBuffer());
    state.session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    state.ort = ort;
  } catch (err) {
    console.error(err);
    useServerOnly(t("runtime_failed", { error: err.message || String(err) }));
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
  }
}

// ---- inference ------------------------------------------------------------------------------

async function predictInBrowser(canvas) {
  const { width, height } = canvas;
  const rgba = canvas.getContext("2d", { willReadFrequently: true }).getImageData(0, 0, width, height).data;
  const input = state.meta.input;
  const { crop, tensor } = prepare(rgbaToRgb(rgba), width, height, input);
  const feeds = { [input.name || "input"]: new state.ort.Tensor("float32", tensor, [1, 3, input.size, input.size]) };
  const out = await state.session.run(feeds);
  const outName = (state.meta.output && state.meta.output.name) || state.session.outputNames[0];
  const result = resultFromLogits(Array.from(out[outName].data), crop, state.meta, 3);
  result.inference = "browser";
  return result;
}

async function predictOnServer(canvas) {
  if (!navigator.onLine) throw new UserError(t("offline_server"));
  // PNG is lossless, so the server sees exactly the framed pixels.
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  const form = new FormData();
  form.append("image", blob, "crop.png");
  let res;
  try {
    res = await fetch("/api/v1/predict?top_k=3&gradcam=true", { method: "POST", body: form });
  } catch (err) {
    throw new UserError(t("network_error", { detail: err.message }));
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new UserError(t("server_error", { detail: body.detail || res.status }));
  return body;
}

function thumbnail(canvas) {
  const c = document.createElement("canvas");
  c.width = c.height = 96;
  c.getContext("2d").drawImage(canvas, 0, 0, 96, 96);
  return c.toDataURL("image/jpeg", 0.8);
}

async function analyse() {
  if (!cropper.bitmap) return;
  const button = $("analyse");
  button.disabled = true;
  button.textContent = t("analysing");
  try {
    const canvas = cropper.cropCanvas();
    const useBrowser = $("mode-browser").checked && state.session;
    const t0 = performance.now();
    const result = useBrowser ? await predictInBrowser(canvas) : await predictOnServer(canvas);
    result.ms = Math.round(performance.now() - t0);
    state.last = result;
    renderResult();
    await history.addCase({
      date: new Date().toISOString(), thumbnail: thumbnail(canvas), inference: result.inference,
      model: `${state.meta.model_name} ${state.meta.version}`,
      result: { status: result.status, top_k: result.top_k, probabilities: result.probabilities, ood: result.ood },
    });
    await renderHistory();
  } catch (err) {
    console.error(err);
    $("load-error").textContent = err instanceof UserError ? err.message : String(err.message || err);
    show($("load-error"));
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
    target.append(el("p", { class: "meta" }, t("no_card", { label })));
    return;
  }
  target.append(el("h3", {}, card.name));
  if (outsideModel) target.append(el("span", { class: "badge" }, t("not_in_model")));
  for (const [key, field] of [["card_what", "what"], ["card_looks", "looks"], ["card_apart", "apart"]]) {
    target.append(el("h4", {}, t(key)), el("p", {}, card[field]));
  }
  target.append(el("div", { class: "doctor" }, el("h4", {}, t("card_doctor")), el("p", {}, card.doctor)));
}

function renderResult() {
  const r = state.last;
  if (!r) return;
  const section = $("result");
  section.dataset.status = r.status;
  section.dataset.inference = r.inference;
  section.dataset.probabilities = JSON.stringify(r.probabilities);
  section.dataset.skinFraction = String(r.ood.skin_fraction);
  const top = r.top_k[0];
  const verdict = $("verdict");
  verdict.className = `verdict ${r.status}`;
  verdict.textContent = r.status === "not_skin" ? t("verdict_not_skin")
    : r.status === "uncertain" ? t("verdict_uncertain", { label: labelName(top.label), p: pct(top.probability), t: pct(state.meta.abstain_threshold) })
      : t("verdict_ok", { label: labelName(top.label), p: pct(top.probability) });
  $("topk").replaceChildren(...r.top_k.map((k) => el("li", { "data-label": k.label, "data-probability": String(k.probability) },
    el("div", { class: "row" }, el("span", {}, labelName(k.label)), el("strong", {}, pct(k.probability))),
    el("div", { class: "track" }, bar(k.probability)))));
  $("result-meta").textContent = t("result_meta", {
    where: t(r.inference === "browser" ? "where_browser" : "where_server"), ms: r.ms ?? "?", skin: pct(r.ood.skin_fraction),
  });
  const cam = r.gradcam;
  show($("gradcam"), Boolean(cam && cam.available));
  if (cam && cam.available) $("gradcam-img").src = cam.image;
  const off = $("gradcam-off");
  off.textContent = r.inference === "browser" ? t("gradcam_browser") : cam && !cam.available ? t("gradcam_off", { reason: cam.reason }) : "";
  show(off, Boolean(off.textContent));
  if (r.status === "not_skin") $("info-card").replaceChildren();
  else renderCard($("info-card"), top.label, false);
  const classes = new Set(state.meta.class_names);
  const others = Object.keys(state.cards).filter((id) => !classes.has(id));
  $("lookalike-cards").replaceChildren(...others.map((id) => {
    const box = el("article", { class: "info", "data-card": id });
    renderCard(box, id, true);
    return box;
  }));
  show(section);
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
    const top = c.result.top_k[0];
    const when = new Date(c.date).toLocaleString(language() === "zh" ? "zh-CN" : "en-GB");
    const del = el("button", { type: "button", "aria-label": t("delete_one") }, t("delete_one"));
    del.addEventListener("click", async () => { await history.deleteCase(c.id); await renderHistory(); });
    return el("li", { "data-id": String(c.id) }, el("img", { src: c.thumbnail, alt: "" }),
      el("div", { class: "what" }, el("div", {}, `${labelName(top.label)} · ${pct(top.probability)} · ${t(`status_${c.result.status}`)}`),
        el("div", { class: "when" }, when)), del);
  }));
  show($("history-empty"), cases.length === 0);
}

// ---- wiring ---------------------------------------------------------------------------------

function applyLanguage(lang) {
  setLanguage(lang);
  $("lang-switch").textContent = t("switch_to");
  renderModelInfo();
  renderResult();
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
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((err) => console.error("service worker:", err));
  }
  try {
    await Promise.all([loadMetadata(), loadCards()]);
    applyLanguage(language());
    await startRuntime();
  } catch (err) {
    console.error(err);
    setRuntimeNotice(String(err.message || err));
  }
  document.body.dataset.ready = state.session ? "browser" : "server";
}

main();
