// The page's shared state and DOM helpers: the one owner of `state`, which app.js (the entry), runtime.js
// (onnxruntime-web and the model) and render.js (what the page shows) read and change.

import { displayName, formatProbability } from "./answer.js";
import { language, t } from "./i18n.js";

export const $ = (id) => document.getElementById(id);
// `started`: the start-up (model information, then the runtime) as a promise, so that an analysis asked for on
// this phone before the runtime is ready waits for it instead of sending the photo anywhere.
export const state = { meta: null, cards: {}, ort: null, session: null, last: null, started: null, download: null,
  waiting: false };

/** A message for people, by its key in i18n.js (and the values it needs); any other error is shown as
 * unexpected. `message` is its text in the language of the moment. */
export class UserError extends Error {
  constructor(key, params = {}) {
    super(t(key, params));
    this.key = key;
    this.params = params;
  }
}

export function show(el, on = true) { el.hidden = !on; }

/** Put the message `key` in `el`, and keep the key: after a language switch `sayAgain` says it in the new one
 * (an error or a notice already on screen would otherwise stay in the old language). */
export function say(el, key, params = {}) {
  el.dataset.say = JSON.stringify([key, params]);
  el.textContent = t(key, params);
}

export function sayAgain() {
  for (const el of document.querySelectorAll("[data-say]")) {
    const [key, params] = JSON.parse(el.dataset.say);
    el.textContent = t(key, params);
  }
}

export function setRuntimeNotice(key, params = {}) {
  const el = $("runtime-notice");
  if (key) say(el, key, params);
  else { el.textContent = ""; delete el.dataset.say; }
  show(el, Boolean(key));
}

/** People read display names ("Normal skin", "正常皮肤"), never identifiers such as normal_skin. */
export function labelName(label) { return displayName(state.cards, label, language()); }

/** Honest rounding: ">99%", never "100%" (see answer.js). */
export function pct(p) { return formatProbability(p); }
