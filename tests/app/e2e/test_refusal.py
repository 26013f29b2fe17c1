"""The web app end to end, a refusal on the page: the not-skin gate in the browser equals Python's and refuses
what is not skin (the bundled model too), a square too small to judge in both modes, and each refusal's reason
and what to do.

Skipped with a message when /usr/bin/chromium or node_modules/onnxruntime-web is absent
(`scripts/install_web_assets.sh` installs both); the browser, the servers and the models are tests/app/e2e/conftest.py's
fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypoderm_testkit.app import skin_photo
from hypoderm_testkit.browser import E2E_MARKS, WAIT_MS, LiveServer, analyse, open_page
from hypoderm_testkit.page import server_result

pytestmark = E2E_MARKS


def test_browser_gate_matches_python_and_rejects_non_skin(browser: object, live: LiveServer, model_dir: Path,
                                                           tmp_path: Path) -> None:
    """The page's not-skin gate (static/js/ood.js) gives Python's scores (within 1e-9) and
    verdicts on skin and non-skin crops, and a wood picture is refused in the UI."""
    from hypoderm.data import nonskin
    from hypoderm.inference import OnnxPredictor, prepare
    from hypoderm.inference.ood import ood_check
    from hypoderm.inference.preprocess import PreprocessSpec

    predictor = OnnxPredictor(model_dir / "model.onnx")
    spec = PreprocessSpec.from_dict(predictor.metadata["input"])
    images = {f"skin_{i}": Image.open(skin_photo(tmp_path / f"s{i}.png", 224 + 32 * i, seed=i)) for i in range(3)}
    images |= {f"{fam}": nonskin.picture(fam, 4242) for fam in nonskin.FAMILIES}
    crops = {name: prepare(img.convert("RGB"), spec)[0] for name, img in images.items()}
    crop_size = next(iter(crops.values())).shape[0]  # the model's crop, which the gate scores too
    logits = [0.7, -0.2, 0.1]
    ctx, page, _, _ = open_page(browser, live.url)
    try:
        # the page's prepare() makes the same crop from the photo (one resize for the model and the gate)
        photo = np.asarray(images["skin_1"].convert("RGB"))
        js_crop = page.evaluate(
            "async ({rgb, w, h}) => { const m = await import('/static/js/preprocess.js');"
            " const meta = await (await fetch('/api/v1/model')).json();"
            " return Array.from(m.prepare(new Uint8ClampedArray(rgb), w, h, meta.input).crop); }",
            {"rgb": photo.ravel().tolist(), "w": photo.shape[1], "h": photo.shape[0]})
        assert np.array_equal(np.asarray(js_crop, np.uint8), crops["skin_1"].ravel())
        got = page.evaluate(
            "async ({crops, logits, size}) => { const m = await import('/static/js/ood.js');"
            " const ood = (await (await fetch('/api/v1/model')).json()).ood; const out = {};"
            " for (const [k, v] of Object.entries(crops))"
            "   out[k] = m.oodCheck(new Uint8ClampedArray(v), size, logits, ood);"
            " return out; }",
            {"crops": {k: c.ravel().tolist() for k, c in crops.items()}, "logits": logits, "size": crop_size})
        verdicts = set()
        for name, crop in crops.items():
            want = ood_check(crop, np.array(logits), predictor.metadata.get("ood"))
            assert abs(got[name]["gate_score"] - want["gate_score"]) <= 1e-9, (name, got[name], want)
            assert got[name]["skin_fraction"] == want["skin_fraction"] and got[name]["is_skin"] == want["is_skin"], name
            verdicts.add(want["is_skin"])
        assert verdicts == {True, False}
        for family, status, reason in [("paper", "not_skin", "not_skin_like"), ("wood", "uncertain", "unsure_skin")]:
            img = nonskin.picture(family, 4243)
            side = min(img.size)
            picture = tmp_path / f"{family}.png"
            img.crop((0, 0, side, side)).save(picture)  # the page frames the whole square at zoom 1
            want = server_result(model_dir, picture)
            assert (want["status"], want["reason"]) == (status, reason), family
            res = analyse(page, picture)
            assert res["inference"] == "browser" and res["status"] == status
            assert page.evaluate("document.getElementById('result').dataset.reason") == reason
    finally:
        ctx.close()


def test_bundled_model_in_the_browser_refuses_paper_and_matches_python(browser: object, tmp_path: Path) -> None:
    """The shipped 128 px model: the gate scores the model's own crop of the framed square in the browser as in
    Python, so the page refuses a paper picture and answers a skin photo with Python's probabilities."""
    from hypoderm.data import nonskin
    from hypoderm.inference import OnnxPredictor, bundled_model

    model_dir = bundled_model().parent
    predictor = OnnxPredictor(bundled_model())
    srv = LiveServer(model_dir)
    ctx, page, _, errors = open_page(browser, srv.url)
    try:
        paper = tmp_path / "paper.png"
        img = nonskin.picture("paper", 4243)
        side = min(img.size)
        img.crop((0, 0, side, side)).save(paper)
        assert predictor.predict_image(Image.open(paper).convert("RGB"), framed=True)["status"] == "not_skin"
        res = analyse(page, paper)
        assert res["inference"] == "browser" and res["status"] == "not_skin"
        from hypoderm_testkit.export import skin_image

        # a synthetic skin-toned texture that the learned skin check does not refuse (it refuses most of them:
        # they are not photos of skin), so that the page's probabilities can be compared with Python's
        skin = tmp_path / "skin.png"
        for seed in range(16):
            skin_image(seed % 2, np.random.default_rng(seed), 256).save(skin)
            want = predictor.predict_image(Image.open(skin).convert("RGB"), framed=True)
            if want["status"] != "not_skin":
                break
        assert want["status"] != "not_skin"
        got = analyse(page, skin)
        shown = page.evaluate("(() => { const d = document.getElementById('result').dataset;"
                              " return [d.reason, Number(d.skinScore)]; })()")
        assert got["status"] == want["status"] and shown[0] == (want["reason"] or "")
        assert abs(shown[1] - want["ood"]["skin_score"]) <= 1e-3  # the check's output of the same graph
        for label, p in want["probabilities"].items():
            assert abs(got["probabilities"][label] - p) <= 1e-4, (label, got, want)
        assert not errors, errors
    finally:
        ctx.close()
        srv.stop()


def test_a_check_fitted_at_another_size_scores_the_same_in_the_browser(browser: object, model_dir: Path,
                                                                      tmp_path: Path) -> None:
    """A skin check fitted at 96 px inside a 224 px model (the graph resizes the input for it, see
    hypoderm.export.skincheck): onnxruntime-web in the page gives the skin score ONNX Runtime gives in Python."""
    from hypoderm.export.skincheck import attach
    from hypoderm.inference import OnnxPredictor
    from hypoderm.inference.skincheck import FORMAT, OUTPUT
    from hypoderm_testkit.export import tiny_skin_check

    folder = tmp_path / "model"
    folder.mkdir()
    attach(model_dir / "model.onnx", tiny_skin_check(tmp_path / "check.onnx"),
           {"format": FORMAT, "output": OUTPUT, "threshold": -100.0, "answer_threshold": -99.0, "input_size": 96},
           out_path=folder / "model.onnx")
    predictor = OnnxPredictor(folder / "model.onnx")
    srv = LiveServer(folder)
    ctx, page, _, errors = open_page(browser, srv.url)
    try:
        for seed in (1, 2):
            photo = skin_photo(tmp_path / f"skin{seed}.png", 300, seed=seed)
            want = predictor.predict_image(Image.open(photo).convert("RGB"), framed=True)["ood"]["skin_score"]
            analyse(page, photo)
            shown = page.evaluate("Number(document.getElementById('result').dataset.skinScore)")
            assert abs(shown - want) <= 1e-3, (seed, shown, want)
        assert not errors, errors
    finally:
        ctx.close()
        srv.stop()


def set_zoom(page: object, zoom: float) -> None:
    page.evaluate("z => { const s = document.getElementById('zoom'); s.value = String(z);"
                  " s.dispatchEvent(new Event('input')); }", zoom)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_too_small_to_judge_in_both_modes(browser: object, sure_live: LiveServer, tmp_path: Path, lang: str) -> None:
    """Item 4: a framed square under the model's minimum real resolution (a 40 px picture, or a 300 px photo zoomed
    to a 37 px square) is "too small to judge", on the phone and on the server: never a class, never a bar."""
    ctx, page, _, _ = open_page(browser, sure_live.url, locale={"en": "en-GB", "zh": "zh-CN"}[lang])
    try:
        tiny = tmp_path / "tiny.png"
        Image.open(skin_photo(tmp_path / "skin.png", 224)).resize((40, 40)).save(tiny)
        for mode in ("browser", "server"):
            page.check(f"#mode-{mode}")
            got = analyse(page, tiny)
            assert (got["inference"], got["status"]) == (mode, "not_skin")
            assert page.evaluate("document.getElementById('result').dataset.reason") == "too_small"
            verdict = page.inner_text("#verdict")
            assert {"en": "too small to judge", "zh": "太小"}[lang] in verdict and "%" not in verdict
            assert {"en": "Zoom out", "zh": "缩小画面"}[lang] in page.inner_text("#advice")
            assert page.locator("#topk li").count() == 0 and page.locator("#candidate-list li").count() == 0
            assert not page.is_visible("#gradcam") and page.locator("#info-card *").count() == 0
        page.screenshot(path=str(tmp_path / f"too_small_{lang}.png"), full_page=True)
        page.check("#mode-browser")
        page.set_input_files("#file-input", str(skin_photo(tmp_path / "big.png", 300)))
        # the photo decodes asynchronously and a new photo starts at zoom 1 (hiding the last result): zoom after that
        page.wait_for_selector("#result", state="hidden", timeout=WAIT_MS)
        set_zoom(page, 8)
        assert page.evaluate("document.getElementById('zoom').value") == "8"
        page.click("#analyse")
        page.wait_for_selector("#result[data-reason='too_small']:not([hidden])", timeout=WAIT_MS)
    finally:
        ctx.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_refusals_say_their_reason_and_what_to_do(browser: object, live: LiveServer, tmp_path: Path,
                                                  lang: str) -> None:
    """Item 3: each refusal or withheld answer names its own reason with what to do, and quotes no skin-colour
    share (a refusal for "not skin-like" next to "skin-coloured pixels 100%" contradicts itself)."""
    from hypoderm.data import nonskin

    words = {"en": {"too_dark": ("too dark", "more light"), "little_skin": ("too little skin", "fills most"),
                    "not_skin_like": ("texture, an object, a screen or a drawing", "Photograph the skin itself"),
                    "unsure_skin": ("may not be a photo of skin", "dermatologist")},
             "zh": {"too_dark": ("太暗", "光线"), "little_skin": ("皮肤太少", "占满"),
                    "not_skin_like": ("纹理、物体、屏幕或图画", "直接拍摄皮肤"),
                    "unsure_skin": ("可能不是皮肤照片", "皮肤科医生")}}[lang]
    pictures = {"too_dark": Image.new("RGB", (200, 200), (22, 14, 10)),
                "little_skin": Image.new("RGB", (200, 200), (30, 60, 200)),
                "not_skin_like": nonskin.picture("paper", 4243), "unsure_skin": nonskin.picture("wood", 4243)}
    ctx, page, _, _ = open_page(browser, live.url, locale={"en": "en-GB", "zh": "zh-CN"}[lang])
    try:
        for reason, img in pictures.items():
            side = min(img.size)
            path = tmp_path / f"{reason}.png"
            img.crop((0, 0, side, side)).save(path)
            analyse(page, path)
            assert page.evaluate("document.getElementById('result').dataset.reason") == reason
            said = page.inner_text("#verdict") + " " + page.inner_text("#advice")
            assert words[reason][0] in said and words[reason][1] in said, (reason, said)
            assert "%" not in page.inner_text("#result"), reason  # no share of skin colour, no probability
            assert page.locator("#topk li").count() == 0 and page.locator("#candidate-list li").count() == 0
            assert not page.is_visible("#gradcam")
            page.screenshot(path=str(tmp_path / f"{reason}_{lang}.png"), full_page=True)
        first = page.inner_text("#history-list li:first-child .what > div:first-child")
        assert first == {"en": "Uncertain: see a dermatologist", "zh": "结果不确定：请咨询皮肤科医生"}[lang]
        dark = page.inner_text("#history-list li:nth-child(4) .what > div:first-child")
        assert dark == {"en": "Not analysed (too dark)", "zh": "未分析（太暗）"}[lang]
    finally:
        ctx.close()
