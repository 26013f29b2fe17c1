// What an answer may say, as pure functions (the JavaScript twin of hypoderm.cards): display names,
// honest percentages, and the model's limits derived from its class list and the information cards.

/** An honest percentage: whole percent, ">99%" above 0.99, "<1%" below 0.01; never "100%" or "0%". */
export function formatProbability(p) {
  p = Number(p);
  if (p > 0.99) return ">99%";
  if (p < 0.01) return "<1%";
  return `${Math.round(100 * p)}%`;
}

function cardText(cards, label, lang) {
  const card = cards[label];
  return card ? card[lang] || card.en : null;
}

/** The class's name for people in `lang`; never the identifier ("normal_skin" -> "Normal skin"). */
export function displayName(cards, label, lang) {
  const card = cardText(cards, label, lang);
  if (card) return card.name;
  const text = String(label).replace(/_/g, " ").trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** How an answer of class `label` is worded when its card says (a class that is not a condition, e.g.
 * other_lesion: never named as a diagnosis; hypoderm.cards.answer_text), with {p} filled; else null. */
export function answerText(cards, label, p, lang) {
  const card = cardText(cards, label, lang);
  return card && card.answer ? card.answer.replace("{p}", formatProbability(p)) : null;
}

/** "condition", "normal", "other" or null (a class without a card). */
export function kindOf(cards, label) {
  return cards[label] ? cards[label].kind || "condition" : null;
}

/**
 * What the model cannot tell: the hypopigmented conditions with a card that are not among its
 * classes (it would force them into one of its classes), each with the examination that tells it
 * apart. A model trained on more classes gets a shorter list.
 */
export function modelLimits(cards, classNames, lang) {
  const known = new Set(classNames);
  const unknown = Object.keys(cards)
    .filter((id) => (cards[id].kind || "condition") === "condition" && !known.has(id))
    .map((id) => ({ id, name: displayName(cards, id, lang), exam: (cardText(cards, id, lang) || {}).exam || "" }));
  return { known: classNames.map((c) => displayName(cards, c, lang)), unknown };
}

/** Candidates of an uncertain answer, as equals: display names in alphabetical order, no numbers. */
export function candidates(cards, topK, lang) {
  const collator = new Intl.Collator(lang === "zh" ? "zh-CN" : "en");
  return topK.map((k) => displayName(cards, k.label, lang)).sort(collator.compare);
}
