"""The verdict: what one photo's logits and square answer (`status`) and, without an answer, why (`reason`).

The contract between Python and the page: `static/js/verdict.js` mirrors this file (tests/parity/test_verdict.py
runs both on the same inputs), and both say it in the words of `assets/text/messages.json` (en and zh; the page
through static/js/i18n.js, `predict` and the API through `message`). The answer's format is docs/PREDICT_SCHEMA.md.

    ok          an answer: the top class (its probability reaches the abstain threshold)
    uncertain   no answer, the candidates shown as equals (see a dermatologist)
    not_skin    refused: nothing is judged, no candidates

Every reason gives one status (REASONS): `too_small` (the photo or framed square has fewer than MIN_SOURCE_SIDE
pixels across) and `low_confidence` (the top probability is below the abstain threshold, which never falls below
`hypoderm.model_quality.abstain_floor`) are the verdict's own; the others are the not-skin check's
(`hypoderm.inference.ood.REASONS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hypoderm.cards import answer_text, display_name, load_messages
from hypoderm.inference.metadata import DISCLAIMER, ModelLoadError
from hypoderm.inference.ood import REASONS as OOD_REASONS
from hypoderm.inference.ood import ood_check
from hypoderm.model_quality import effective_abstain_threshold

STATUSES = ("ok", "uncertain", "not_skin")

# Why there is no answer, and the status each reason gives (the not-skin check's reasons between the verdict's own).
REASONS: dict[str, str] = {"too_small": "not_skin", **OOD_REASONS, "low_confidence": "uncertain"}
REFUSAL_REASONS = tuple(r for r, status in REASONS.items() if status == "not_skin")
WITHHOLD_REASONS = tuple(r for r, status in REASONS.items() if status == "uncertain")

# The smallest real resolution (shorter side, in pixels of the photo or of the framed square) that is judged:
# below it the model would see a blown-up blur, and an answer would be a guess (status not_skin, too_small).
MIN_SOURCE_SIDE = 64


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax(logits / temperature), numerically stable, float64."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def answer_threshold(metadata: dict[str, Any], label: str) -> float:
    """The probability the top class `label` needs to be answered: the abstain threshold (never below the chance
    floor, `hypoderm.model_quality.abstain_floor`), raised for a class that `answer_thresholds` names (a stricter
    bar for an answer whose false alarm costs more, e.g. vitiligo on healthy skin; `hypoderm export
    --answer-threshold`)."""
    base = effective_abstain_threshold(float(metadata["abstain_threshold"]), len(metadata["class_names"]))
    return max(base, float((metadata.get("answer_thresholds") or {}).get(label, 0.0)))


# How many classes an answer the model could not choose names as equals (all of them when the model has fewer), at
# any --top-k: a shorter list would name the withheld answer itself. The page's list is the same (`render.js`).
MIN_CANDIDATES = 3


def reason_message(reason: str, candidates: list[str], lang: str = "en") -> str:
    """What a refused or withheld answer says (messages.json): what happened, what to do, and when the model could
    not choose (`low_confidence`) its candidates, named as equals. An answer withheld because the photo may not be
    skin (`unsure_skin`, `unusual_logits`) names none, as on the page: the classes may not apply."""
    text = load_messages()[lang]
    said = f"{text['verdict_' + reason].format(min=MIN_SOURCE_SIDE)} {text['advice_' + reason]}"
    if reason != "low_confidence":
        return said
    return f"{said} {text['candidates_title']} {', '.join(sorted(candidates))}."


def result_from_logits(logits: np.ndarray, crop: np.ndarray, metadata: dict[str, Any], top_k: int = 3,
                       source_side: int | None = None, skin_score: float | None = None) -> dict[str, Any]:
    """One image's logits (C,) + its uint8 square -> the per-image result (docs/PREDICT_SCHEMA.md): not_skin
    (too small, or refused by the not-skin check), else uncertain (answer withheld by the check, or
    low_confidence), else ok. `source_side`: the shorter side of the photo (or framed square) in its own pixels;
    `skin_score`: the learned skin check's output (None: the model has none).

    Only an `ok` verdict names a class as the answer (`answer`); a refused photo has an empty `top_k`. The raw
    probabilities stay in `probabilities` for research use; the message rounds honestly."""
    names = list(metadata["class_names"])
    logits = np.asarray(logits, dtype=np.float64).ravel()
    if logits.size != len(names):
        raise ModelLoadError(f"model gives {logits.size} outputs but metadata names {len(names)} classes")
    probs = softmax(logits, float(metadata["temperature"]))
    ranked = np.argsort(-probs, kind="stable")
    top = [{"label": names[i], "probability": float(probs[i])} for i in ranked[: max(1, min(int(top_k), len(names)))]]
    ood = ood_check(crop, logits, metadata.get("ood"), skin_score)
    reason = ood["reason"]
    if source_side is not None and source_side < MIN_SOURCE_SIDE:
        reason = "too_small"
        ood = {**ood, "is_skin": False, "answerable": False, "reason": reason}
    if reason is None and top[0]["probability"] < answer_threshold(metadata, top[0]["label"]):
        reason = "low_confidence"
    answer = None
    if reason is None:
        status, answer = "ok", top[0]["label"]
        message = f"{answer_text(answer, top[0]['probability'])} {DISCLAIMER}"
    else:
        status = REASONS[reason]
        named = ranked[: max(len(top), MIN_CANDIDATES)]
        message = reason_message(reason, [display_name(names[i]) for i in named])
        if status == "not_skin":
            top = []
    return {"status": status, "answer": answer, "reason": reason, "top_k": top,
            "probabilities": {n: float(p) for n, p in zip(names, probs, strict=True)},
            "ood": ood, "message": message}
