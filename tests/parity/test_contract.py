"""The walk of one photo through `predict` and through the page (docs/ARCHITECTURE.md, "One photo, walked through
both languages") is true of the files: every module it names exists, and from the square rule to the heat map each
step pairs a Python module with the JavaScript twin that names it in its first comment line."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "hypoderm"
JS = SRC / "app" / "static" / "js"
TWIN_STEPS = range(3, 10)  # the square rule to the heat map; steps 1, 2 and 10 are each language's own glue


def walk_rows() -> list[tuple[int, list[str], list[str]]]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("### One photo, walked through both languages", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            py = re.findall(r"`([\w/]+\.py)`", cells[2])
            js = re.findall(r"`([\w]+\.js)`", cells[3])
            rows.append((int(cells[0]), py, js))
    return rows


def test_the_walk_has_every_step_in_order_and_names_real_files() -> None:
    rows = walk_rows()
    assert [n for n, _, _ in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 9
    for n, py, js in rows:
        assert py and js, f"step {n} names no module in one of the languages"
        for p in py:
            assert (SRC / p).is_file(), f"step {n}: src/hypoderm/{p} does not exist"
        for j in js:
            assert (JS / j).is_file(), f"step {n}: static/js/{j} does not exist"


def test_each_twin_names_its_python_module_first() -> None:
    """From step 3 to step 9, the first JavaScript file of a step says in its opening comment which Python module it
    mirrors (hypoderm.inference.preprocess, ..., hypoderm.cards), and the names match (preprocess.py -> preprocess.js,
    explain.py -> gradcam.js, cards.py -> answer.js) where the step pairs one module with one twin."""
    paired = 0
    for n, py, js in walk_rows():
        if n not in TWIN_STEPS or "app.js" in js:  # step 4: the model run itself, ONNX Runtime in both
            continue
        module = "hypoderm." + py[0].removesuffix(".py").replace("/", ".")
        head = (JS / js[0]).read_text(encoding="utf-8").split("\n\n", 1)[0]
        assert module in head, f"static/js/{js[0]} does not say it mirrors {module}"
        paired += 1
    assert paired >= 6
