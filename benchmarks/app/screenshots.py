"""Screenshots of the app as a person meets it, on a phone (390 x 844 CSS px) in English and Chinese, to be read as a
worried patient would read them: benchmarks/app/screenshots/<state>_<lang>.jpg.

    PYTHONPATH=src python benchmarks/app/screenshots.py [--out benchmarks/app/screenshots]

States: getting_ready (a 4 Mbit/s link; a photo chosen and Analyse tapped before the runtime arrived: the page waits,
it never uploads), answer (the bundled model on a synthetic skin photo, with the heat map when it answers),
uncertain (a model that cannot choose: no class, no heat map), too_small (a 40 px picture), not_skin_like (a paper
texture), unsure_skin (a wood texture: maybe not skin), other_lesion (a 3-class model answering other_lesion: never
named as a lesion), normal_skin (a 3-class model answering normal_skin), history_reopened (two photos analysed, then
the first one tapped in the history: its result again, marked as a past one with its photo and time), server_failed
(an answer on the phone, then "On the server" with the server unreachable: the error, and the answer still on screen
marked as an earlier one). `--only STATE ...` takes some of them. Needs Debian's chromium and
node_modules/onnxruntime-web, like the browser tests.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hypoderm_testkit.app import build_model_dir, skin_photo

ROOT = Path(__file__).resolve().parents[2]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 1, "is_mobile": True, "has_touch": True}
LOCALES = {"en": "en-GB", "zh": "zh-CN"}
SLOW_LINK = {"offline": False, "latency": 50, "downloadThroughput": 4e6 / 8, "uploadThroughput": 4e6 / 8}


def serve(model_dir: Path) -> tuple[Any, str]:
    import uvicorn

    from hypoderm.app.server import REPO_NODE_MODULES, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(model_dir, web_assets=REPO_NODE_MODULES), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/"


def constant_model(out: Path, classes: list[str], probabilities: list[float], threshold: float = 0.6) -> Path:
    """A model that gives `probabilities` for every photo (its answer is known exactly)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, len(classes)))
    with torch.no_grad():
        model[-1].weight.zero_()
        model[-1].bias.copy_(torch.log(torch.tensor(probabilities)))
    return build_model_dir(out, size=224, classes=classes, temperature=1.0, abstain_threshold=threshold,
                           model_name="demo", model=model, extra={"training_data": {
                               "summary": "", "counts": {c: 100 for c in classes}}})


def square(img: Image.Image, path: Path) -> Path:
    side = min(img.size)
    img.crop((0, 0, side, side)).convert("RGB").save(path)
    return path


def shoot(browser: Any, url: str, lang: str, photo: Path, out: Path, slow: bool = False,
          then: str | None = None) -> None:
    """Choose `photo`, tap Analyse, and save the page: at once on a slow link, else once the result is shown;
    `then`: "reopen" (analyse a second photo, then tap the first one in the history) or "fail" (analyse again on an
    unreachable server)."""
    ctx = browser.new_context(locale=LOCALES[lang], **PHONE)
    page = ctx.new_page()
    if slow:
        cdp = ctx.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", SLOW_LINK)
    page.goto(url)
    page.wait_for_selector("#loading:not([hidden])" if slow else "body[data-ready]", timeout=120_000)
    page.set_input_files("#file-input", str(photo))
    page.click("#analyse")
    if slow:
        for _ in range(600):  # until the bar shows the bytes that travel
            if "MB" in page.inner_text("#load-status"):
                break
            page.wait_for_timeout(50)
        page.screenshot(path=str(out), type="jpeg", quality=85, full_page=True)  # the bar and the button
    else:
        page.wait_for_selector("#result:not([hidden])", timeout=120_000)
        if then == "reopen":
            page.wait_for_selector("#history-list li")
            page.evaluate("document.getElementById('result').hidden = true")
            page.set_input_files("#file-input", str(square(nonskin_paper(), out.with_suffix(".tmp.png"))))
            page.click("#analyse")
            page.wait_for_selector("#result:not([hidden])", timeout=120_000)
            out.with_suffix(".tmp.png").unlink()
            page.wait_for_selector("#history-list li:nth-child(2)")
            page.click("#history-list li:nth-child(2) button.open")
            page.wait_for_selector("#result[data-past='true']")
        elif then == "fail":
            page.check("#mode-server")
            page.route("**/api/v1/predict*", lambda route: route.abort())
            page.click("#analyse")
            page.wait_for_selector("#result[data-stale='true']", timeout=120_000)
        page.wait_for_timeout(300)
        page.evaluate(f"document.getElementById('{'crop' if then == 'fail' else 'result'}').scrollIntoView()")
        page.screenshot(path=str(out), type="jpeg", quality=85, full_page=True)
    ctx.close()


def nonskin_paper() -> Image.Image:
    from hypoderm.data import nonskin

    return nonskin.picture("paper", 4243)


def main() -> None:
    from playwright.sync_api import sync_playwright

    from hypoderm.data import nonskin
    from hypoderm.inference import bundled_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "app" / "screenshots")
    ap.add_argument("--only", nargs="+", default=None, metavar="STATE", help="take only these states")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="hypoderm-shots-"))
    from hypoderm_testkit.export import skin_image

    skin = tmp / "skin.png"
    skin_image(1, np.random.default_rng(2), 512).save(skin)  # textured skin with pale patches (the gate passes it)
    tiny = tmp / "tiny.png"
    Image.open(skin_photo(tmp / "small.png", 224)).resize((40, 40)).save(tiny)
    three = ["normal_skin", "other_lesion", "vitiligo"]
    normal = constant_model(tmp / "normal", three, [0.9, 0.05, 0.05])
    states = {  # state: (model folder, photo, slow link, then)
        "getting_ready": (bundled_model().parent, skin, True),
        "answer": (bundled_model().parent, skin, False),
        "uncertain": (constant_model(tmp / "unsure", ["normal_skin", "vitiligo"], [0.55, 0.45]), skin, False),
        "too_small": (bundled_model().parent, tiny, False),
        "not_skin_like": (bundled_model().parent, square(nonskin.picture("paper", 4243), tmp / "paper.png"), False),
        "unsure_skin": (bundled_model().parent, square(nonskin.picture("wood", 4243), tmp / "wood.png"), False),
        "other_lesion": (constant_model(tmp / "other", three, [0.05, 0.9, 0.05]), skin, False),
        "normal_skin": (normal, skin, False),
        "history_reopened": (normal, skin, False, "reopen"),
        "server_failed": (normal, skin, False, "fail"),
    }
    if args.only:
        unknown = set(args.only) - set(states)
        if unknown:
            raise SystemExit(f"unknown state(s) {sorted(unknown)}; choose from {sorted(states)}")
        states = {k: v for k, v in states.items() if k in args.only}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        for state, (model_dir, photo, slow, *then) in states.items():
            server, url = serve(model_dir)
            for lang in LOCALES:
                shoot(browser, url, lang, photo, args.out / f"{state}_{lang}.jpg", slow=slow,
                      then=then[0] if then else None)
                print(f"{state}_{lang}.jpg")
            server.should_exit = True
        browser.close()


if __name__ == "__main__":
    main()
