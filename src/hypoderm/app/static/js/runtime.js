// onnxruntime-web and the model on this device: downloaded with their progress shown, then started; an
// analysis on this phone waits here for them (nothing is sent to the server meanwhile).

import { t } from "./i18n.js";
import { $, UserError, setRuntimeNotice, show, state } from "./page.js";

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

export async function startRuntime() {
  const b = state.meta.browser_inference;
  if (!b || !b.available) {
    useServerOnly("runtime_missing");
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
    useServerOnly("runtime_failed");
  } finally {
    show($("loading"), false);
  }
}

function useServerOnly(notice) { // a message key
  $("mode-browser").disabled = true;
  $("mode-server").checked = true;
  setRuntimeNotice(notice);
}

/** "On this phone" is a promise that the photo stays here: wait for the runtime (the button says it is getting
 * ready, with the download's progress), and if it cannot start, send nothing and ask. */
export async function waitForRuntime() {
  state.waiting = true;
  renderWaiting();
  try {
    await state.started.catch(() => {}); // a failed start-up is said below, as for a runtime that cannot start
  } finally {
    state.waiting = false;
  }
  if (!state.session) throw new UserError("runtime_failed_nothing_sent");
}
