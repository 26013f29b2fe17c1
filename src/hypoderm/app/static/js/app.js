// The page: photo -> crop -> model (in the browser with onnxruntime-web, or on the server) ->
// top-3 with calibrated probabilities, verdict, information card, history on the device.

import { Cropper } from "./crop.js";
import { overlayDataUrl } from "./gradcam.js";
import * as history from "./history.js";
import { initialLanguage, language, loadMessages, setLanguage, t, trainingText } from "./i18n.js";
import { $, UserError, labelName, say, sayAgain, setRuntimeNotice, show, state } from "./page.js";
import { prepare, rgbaToRgb } from "./preprocess.js";
import { renderHistory, renderResult } from "./render.js";
import { startRuntime, waitForRuntime } from "./runtime.js";
import { resultFromLogits } from "./verdict.js";

// The shared state lives in page.js (runtime.js and render.js read it too); the cropper is this page's own.
let cropper = null;

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
    say($("load-error"), "load_failed");
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
  if (!navigator.onLine) throw new UserError("offline_server");
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
    throw new UserError("network_error");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    // The server's detail is English for developers; people get the message for its error code.
    console.error("server:", res.status, body);
    const key = `err_${body.error}`;
    throw t(key) !== key ? new UserError(key) : new UserError("server_error", { code: res.status });
  }
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
    if (err instanceof UserError) say($("analyse-error"), err.key, err.params);
    else say($("analyse-error"), "unexpected_error");
    show($("analyse-error"));
    if (state.last && !$("result").hidden) { state.last.stale = true; renderResult(); }
  } finally {
    button.disabled = false;
    button.textContent = t("analyse");
  }
}

// ---- wiring ---------------------------------------------------------------------------------

function applyLanguage(lang) {
  setLanguage(lang);
  $("lang-switch").textContent = t("switch_to");
  renderModelInfo();
  sayAgain(); // errors and notices already on screen
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
    setRuntimeNotice("start_failed");
  }
  // Registered after the runtime and model have arrived: the worker's precache then takes them from the
  // HTTP cache (immutable URLs) instead of downloading them a second time on the first visit.
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((err) => console.error("service worker:", err));
  }
  document.body.dataset.ready = state.session ? "browser" : "server";
}

main();
