"""static/js/verdict.js = hypoderm.inference.verdict: the same statuses and reasons, the same verdict from the same
logits, and one text per reason and status (assets/text/messages.json) said alike by the page and by Python."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hypoderm.cards import LANGUAGES, load_messages
from hypoderm.inference import ood, verdict
from hypoderm.inference.verdict import MIN_SOURCE_SIDE, REASONS, STATUSES, result_from_logits
from hypoderm.model_quality import abstain_floor
from parity.harness import needs_node, run_js

NAMES = ["normal_skin", "other_lesion", "vitiligo"]
# the gate off and the skin floor at 0: only the abstain rule (and the size) decide
NO_OOD = {"skin_fraction_min": 0.0, "max_logit_min": -1e9, "gate": None}
CROP = np.full((8, 8, 3), (200, 150, 120), dtype=np.uint8)


def _metadata(threshold: float, names: list[str] = NAMES) -> dict:
    return {"class_names": names, "temperature": 1.0, "abstain_threshold": threshold, "ood": NO_OOD,
            "min_source_side": MIN_SOURCE_SIDE}  # the page gets the floor from /api/v1/model


@needs_node
def test_reasons_and_statuses_are_the_same_in_python_and_js() -> None:
    got = run_js("return { statuses: m.verdict.STATUSES, reasons: m.verdict.REASONS, ood: m.ood.REASONS };")
    assert got["statuses"] == list(STATUSES)
    assert got["reasons"] == REASONS and list(got["reasons"]) == list(REASONS)  # same order too
    assert got["ood"] == ood.REASONS
    assert set(REASONS.values()) == {"not_skin", "uncertain"} and "too_small" in REASONS
    assert set(verdict.REFUSAL_REASONS) | set(verdict.WITHHOLD_REASONS) == set(REASONS)


def test_every_reason_and_status_has_its_text_in_both_languages() -> None:
    messages = load_messages()
    for lang in LANGUAGES:
        text = messages[lang]
        for status in STATUSES:
            assert text.get(f"status_{status}"), (lang, status)
        for reason, status in REASONS.items():
            assert text.get(f"verdict_{reason}") and text.get(f"advice_{reason}"), (lang, reason)
            if status == "not_skin":
                assert text.get(f"why_{reason}"), (lang, reason)  # how the history names a refusal
        assert text.get("candidates_title"), lang
        if lang == "zh":
            assert all(re.search("[\u4e00-\u9fff]", v) for v in text.values()), "untranslated zh text"
    assert set(messages["en"]) == set(messages["zh"])


@pytest.mark.parametrize("reason", list(REASONS))
def test_python_says_each_reason_with_the_shared_text(reason: str) -> None:
    en = load_messages()["en"]
    said = verdict.reason_message(reason, ["Vitiligo", "Normal skin"])
    assert said.startswith(en[f"verdict_{reason}"].format(min=MIN_SOURCE_SIDE)) and en[f"advice_{reason}"] in said
    # candidates as equals, sorted, only when the model could not choose; not when the photo may not be skin (the
    # classes may not apply), as on the page (render.js)
    assert ("Normal skin, Vitiligo" in said) == (reason == "low_confidence")


@needs_node
def test_the_page_says_every_reason_in_its_own_words_in_both_languages() -> None:
    """Issue 21 item 3: the page (i18n.js with messages.json) says why there is no answer with the reason code's own
    words (what happened, then what to do), in English and Chinese, never a number such as a skin-colour share."""
    reasons = list(REASONS)
    said = run_js("""
      m.i18n.useMessages(messages); const out = {};
      for (const lang of ["en", "zh"]) {
        m.i18n.setLanguage(lang); out[lang] = {};
        for (const r of reasons) out[lang][r] = [m.i18n.t(`verdict_${r}`, { min: 64 }), m.i18n.t(`advice_${r}`)];
      }
      return out;""", messages=load_messages(), reasons=reasons)
    for lang in ("en", "zh"):
        verdicts = [said[lang][r][0] for r in reasons]
        assert len(set(verdicts)) == len(reasons)  # one wording per reason
        for r in reasons:
            text, advice = said[lang][r]
            assert text != f"verdict_{r}" and advice != f"advice_{r}" and "{" not in text + advice, (lang, r)
            assert "%" not in text + advice and "skin-coloured" not in text, (lang, r)
            if lang == "zh":
                assert re.search("[\u4e00-\u9fff]", text + advice), r
    assert all(said["en"][r][0].startswith("Not analysed") for r in verdict.REFUSAL_REASONS)
    assert all("dermatologist" in said["en"][r][0] for r in verdict.WITHHOLD_REASONS)
    assert "64" in said["en"]["too_small"][0] and "Zoom out" in said["en"]["too_small"][1]


@needs_node
def test_js_result_from_logits_gives_the_python_verdict() -> None:
    """verdict.js resultFromLogits gives the status, reason and answer of result_from_logits: around the abstain
    floor (for 2 and 3 classes, stored thresholds below and above it) and for a square too small to judge."""
    cases = []
    for names in (NAMES, NAMES[:2]):
        k = len(names)
        for threshold in (1.0 / k + 1e-3, abstain_floor(k) + 0.05, 0.9):
            for gap in (0.0, 0.3, 0.45, 0.6, 1.0, 2.0, 4.0):
                for side in (None, MIN_SOURCE_SIDE - 1, MIN_SOURCE_SIDE):
                    cases.append({"logits": [gap] + [0.0] * (k - 1), "metadata": _metadata(threshold, names),
                                  "side": side})
    got = run_js("""
      return { out: cases.map((x) => m.verdict.resultFromLogits(x.logits, crop, x.metadata, 3, x.side)),
               floors: [m.verdict.abstainFloor(2), m.verdict.abstainFloor(3)] };""", cases=cases, crop=CROP)
    assert got["floors"] == [abstain_floor(2), abstain_floor(3)]
    seen = set()
    for case, js in zip(cases, got["out"], strict=True):
        py = result_from_logits(np.array(case["logits"]), CROP, case["metadata"], source_side=case["side"])
        assert (js["status"], js["reason"], js["answer"]) == (py["status"], py["reason"], py["answer"]), case
        assert [t["label"] for t in js["top_k"]] == [t["label"] for t in py["top_k"]], case
        assert all(abs(a["probability"] - b["probability"]) <= 1e-12
                   for a, b in zip(js["top_k"], py["top_k"], strict=True))
        assert js["ood"]["is_skin"] == py["ood"]["is_skin"] and js["ood"]["answerable"] == py["ood"]["answerable"]
        under_floor = case["metadata"]["abstain_threshold"] < abstain_floor(len(case["logits"]))
        seen.add((py["status"], py["reason"], under_floor))
    # both verdicts were reached with a stored threshold under the floor: the floor, not the threshold, decided
    assert {("ok", None, True), ("uncertain", "low_confidence", True), ("not_skin", "too_small", True)} <= seen


@needs_node
def test_js_applies_the_answer_thresholds_as_python_does() -> None:
    """A class named in `answer_thresholds` needs its own, higher bar in the page as in Python (tests/inference/
    test_answer_thresholds.py), below the abstain threshold or the floor it changes nothing, and a class name that
    is an Object property in JavaScript ("constructor") is no bar."""
    names = [*NAMES, "constructor"]
    cases = []
    for bars in ({}, {"vitiligo": 0.8}, {"vitiligo": 0.3}, {"vitiligo": 0.8, "normal_skin": 0.95}):
        for top in range(len(names)):
            for gap in (0.6, 1.2, 1.6, 2.0, 2.6, 3.5, 5.0):
                logits = [0.0] * len(names)
                logits[top] = gap
                cases.append({"logits": logits, "metadata": {**_metadata(0.45, names), "answer_thresholds": bars}})
    got = run_js("return cases.map((x) => m.verdict.resultFromLogits(x.logits, crop, x.metadata, 3, null));",
                 cases=cases, crop=CROP)
    seen = set()
    for case, js in zip(cases, got, strict=True):
        py = result_from_logits(np.array(case["logits"]), CROP, case["metadata"])
        assert (js["status"], js["reason"], js["answer"]) == (py["status"], py["reason"], py["answer"]), case
        top = names[int(np.argmax(case["logits"]))]
        seen.add((top, tuple(sorted(case["metadata"]["answer_thresholds"].items())), py["status"]))
    # the bar withheld vitiligo answers that the abstain threshold alone gives, and still let sure ones through
    assert ("vitiligo", (("vitiligo", 0.8),), "uncertain") in seen and ("vitiligo", (("vitiligo", 0.8),), "ok") in seen
    assert ("constructor", (("vitiligo", 0.8),), "ok") in seen


@needs_node
def test_the_page_words_every_error_the_predict_endpoint_can_answer_in_both_languages() -> None:
    """The page turns the API's error code into a sentence (`err_<code>` in i18n.js, app.js predictOnServer); a code
    without one showed "error 503". Every code an upload to /api/v1/predict can get (the image's own, and the
    server's limits: busy, too many uploads, too slow, too large) has its words in English and Chinese."""
    import hypoderm.app.admission as admission_module
    import hypoderm.app.api as api_module
    import hypoderm.app.upload as upload_module

    sources = "".join(Path(m.__file__).read_text() for m in (admission_module, api_module, upload_module)
                      if m.__file__ is not None)
    raised = set(re.findall(r'ApiError\(\d+, "([a-z_]+)"', sources)) - {"not_found"}
    codes = sorted(raised | {code for _, code in api_module.LOAD_ERRORS.values()})
    assert {"server_busy", "too_many_uploads", "bad_aspect_ratio", "too_many_pixels"} <= set(codes)
    said = run_js("""
      m.i18n.useMessages(messages); const out = {};
      for (const lang of ["en", "zh"]) {
        m.i18n.setLanguage(lang); out[lang] = {};
        for (const c of codes) out[lang][c] = m.i18n.t(`err_${c}`);
      }
      return out;""", messages=load_messages(), codes=codes)
    for code in codes:
        en, zh = said["en"][code], said["zh"][code]
        assert en != f"err_{code}" and zh != f"err_{code}", f"no words for the API's error {code!r}"
        assert re.search("[\u4e00-\u9fff]", zh) and en != zh, code
