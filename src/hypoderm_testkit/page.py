"""What the browser tests of the app's page (tests/app/e2e/) read from it and feed it: Python's answer for the square
the page frames (`server_result`), a model whose answer is known exactly (`constant_model_dir`), a picture with no
skin (`blue_photo`), everything a person can read on the page (`visible_text`), Latin-script sentences in it
(`latin_sentences`) and the cases the page stored (`stored_cases`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PIL import Image

from hypoderm_testkit.app import build_model_dir

TWO_CLASSES = ["normal_skin", "vitiligo"]
ALLOWED_LATIN = ("Grad-CAM", "JSON", "API", "KOH", "hypoderm", "PAD-UFES-20")  # identifiers, not sentences
LATIN_SENTENCE = re.compile(r"[A-Za-z][A-Za-z'’]+(?:[\s,.;:()\-/]+[A-Za-z][A-Za-z'’]+)+")


def server_result(model_dir: Path, photo: Path) -> dict:
    """Python's answer for the square the page frames at zoom 1 (the whole photo when it is square), seen whole."""
    from hypoderm.inference import OnnxPredictor

    return OnnxPredictor(model_dir / "model.onnx").predict_image(Image.open(photo).convert("RGB"), framed=True)


def constant_model_dir(out: Path, logits: list[float], abstain_threshold: float = 0.6,
                       extra: dict | None = None) -> Path:
    """A 2-class model (normal_skin, vitiligo) whose logits are `logits` for every photo: the
    answer the page must show is known exactly (e.g. vitiligo at 0.9996, or 55/45 below the threshold)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 2))
    with torch.no_grad():
        head = model[-1]
        assert isinstance(head, torch.nn.Linear)
        head.weight.zero_()
        head.bias.copy_(torch.tensor(logits))
    return build_model_dir(out, size=224, classes=TWO_CLASSES, temperature=1.0, abstain_threshold=abstain_threshold,
                           model_name="e2e", model=model,
                           extra={"training_data": {"summary": "synthetic photos for the browser tests",
                                                    "counts": {"normal_skin": 10, "vitiligo": 20}}, **(extra or {})})


def blue_photo(path: Path) -> Path:
    """A picture with no skin-coloured pixel: the page must refuse it (not_skin)."""
    Image.new("RGB", (300, 300), (30, 60, 200)).save(path)
    return path


def visible_text(page: Any) -> str:
    """Everything a person can read or hear: rendered text (all <details> opened) plus alt, aria-label,
    title and placeholder attributes."""
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    return page.evaluate("""(() => {
      const attrs = [...document.querySelectorAll('[alt],[aria-label],[title],[placeholder]')]
        .flatMap(e => ['alt', 'aria-label', 'title', 'placeholder'].map(a => e.getAttribute(a)).filter(Boolean));
      return [document.title, document.body.innerText, ...attrs].join('\\n');
    })()""")


def latin_sentences(text: str, identifiers: tuple[str, ...]) -> list[str]:
    for word in (*ALLOWED_LATIN, *identifiers):
        text = text.replace(word, " ")
    return LATIN_SENTENCE.findall(text)


def stored_cases(page: Any) -> list[dict]:
    return page.evaluate("""new Promise((ok, bad) => { const r = indexedDB.open('hypoderm', 1);
      r.onsuccess = () => { const q = r.result.transaction('cases').objectStore('cases').getAll();
        q.onsuccess = () => ok(q.result.map(c => c.result)); q.onerror = () => bad(q.error); }; })""")
