// The page's shared state and DOM helpers: the one owner of `state`, which app.js (the entry), runtime.js
// (onnxruntime-web and the model) and render.js (what the page shows) read and change.

import { displayName, formatProbability } from "./answer.js";
import { language } from "./i18n.js";

export const $ = (id) => document.getElementById(id);
// `started`: the start-up (model information, then the runtime) as a promise, so that an analysis asked for on
// this phone before the runtime is ready waits for it instead of sending the photo anywhere.
export const state = { meta: null, cards: {}, ort: null, session: null, last: null, started: null, download: null,
  waiting: false };

/** A message for people (already in their language); any other error is shown as unexpected. */
export class UserError extends Error {}

export function show(el, on = true) { el.hidden = !on; }

export function setRuntimeNotice(text) {
  const el = $("runtime-notice");
  el.textContent = text || "";
  show(el, Boolean(text));
}

/** People read display names ("Normal skin", "正常皮肤"), never identifiers such as normal_skin. */
export function labelName(label) { return displayName(state.cards, label, language()); }

/** Honest rounding: ">99%", never "100%" (see answer.js). */
export function pct(p) { return formatProbability(p); }
