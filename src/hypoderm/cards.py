"""What an answer may say: display names, honest percentages and the model's limits (torch-free).

One source for the app and `hypoderm predict`: the information cards in `assets/text/cards.json` and the
verdict texts in `assets/text/messages.json` (en and zh; TEXT_DIR, which the app serves to the page as
/static/data/*.json). A model knows only its `class_names`; every hypopigmented
condition with a card that is *not* among them would be forced into one of the known classes, so
each answer lists those conditions with the examination that tells them apart. A model trained on
more classes therefore says less.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

# What people read, for every layer (cards, verdict texts): plain data files below every module that reads them.
TEXT_DIR = Path(str(resources.files("hypoderm") / "assets" / "text"))
LANGUAGES = ("en", "zh")


@lru_cache(maxsize=1)
def load_cards() -> dict[str, dict[str, Any]]:
    """The cards by class id: {"kind": "condition"|"normal", "en": {...}, "zh": {...}}."""
    return json.loads((TEXT_DIR / "cards.json").read_text(encoding="utf-8"))["cards"]


@lru_cache(maxsize=1)
def load_messages() -> dict[str, dict[str, str]]:
    """The verdict texts by language: {"en": {"verdict_too_dark": ..., ...}, "zh": {...}} (messages.json)."""
    data = json.loads((TEXT_DIR / "messages.json").read_text(encoding="utf-8"))
    return {lang: data[lang] for lang in LANGUAGES}


def _card(label: str, lang: str) -> dict[str, str] | None:
    card = load_cards().get(label)
    return (card.get(lang) or card.get("en")) if card else None


def display_name(label: str, lang: str = "en") -> str:
    """The class's name for people ("Normal skin", "正常皮肤"); never the identifier `normal_skin`.
    A class without a card gets its identifier with underscores as spaces, capitalised."""
    card = _card(label, lang)
    if card:
        return card["name"]
    text = label.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def format_probability(p: float) -> str:
    """An honest percentage: whole percent, ">99%" above 0.99 and "<1%" below 0.01, so "100%" or
    "0%" is never shown for a probability a model gives (it is never certain)."""
    p = float(p)
    if p > 0.99:
        return ">99%"
    if p < 0.01:
        return "<1%"
    return f"{round(100 * p)}%"


def answer_text(label: str, p: float, lang: str = "en") -> str:
    """How an answer of class `label` with probability `p` is said: the card's own wording when it has one
    (a class that is not a condition, e.g. other_lesion, is never named as a diagnosis), else the page's words
    (messages.json `status_ok`): "Most likely: Vitiligo (93%), of the classes this model knows."."""
    card = _card(label, lang)
    if card and card.get("answer"):
        return card["answer"].format(p=format_probability(p))
    return load_messages()[lang]["status_ok"].format(label=display_name(label, lang), p=format_probability(p))


def unknown_conditions(class_names: list[str]) -> list[str]:
    """Card ids of the hypopigmented conditions the model was not trained on (card order)."""
    known = set(class_names)
    return [cid for cid, card in load_cards().items() if card.get("kind") == "condition" and cid not in known]


def model_limits(class_names: list[str], lang: str = "en") -> dict[str, Any]:
    """What the model cannot tell: {"known": [display names], "unknown": [{"id", "name", "exam"}]}."""
    return {"known": [display_name(c, lang) for c in class_names],
            "unknown": [{"id": cid, "name": display_name(cid, lang), "exam": (_card(cid, lang) or {}).get("exam", "")}
                        for cid in unknown_conditions(class_names)]}


def limits_text(class_names: list[str], label: str | None = None) -> str:
    """One English paragraph stating the limits next to an answer (`label`: the answered class)."""
    lim = model_limits(class_names)
    known = " and ".join(lim["known"]) if len(lim["known"]) <= 2 else ", ".join(lim["known"])
    text = f"This model knows only {known}."
    if not lim["unknown"]:
        return text
    names = ", ".join(u["name"] for u in lim["unknown"])
    card = load_cards().get(label) if label else None
    if label and card and card.get("kind") == "condition":
        text += (f" It cannot tell {display_name(label)} from look-alikes it was never shown ({names}); "
                 "a doctor tells them apart:")
    elif label and card and card.get("kind") == "other":
        text += (f" '{display_name(label)}' is not a diagnosis of any lesion, and the hypopigmented conditions it was "
                 f"never shown ({names}) may still be present; a doctor tells them apart:")
    elif label and card and card.get("kind") == "normal":
        text += (f" '{display_name(label)}' does not rule out conditions it was never shown ({names}); "
                 "a doctor tells them apart:")
    else:
        text += f" It was never shown {names}; a doctor tells them apart:"
    return text + "".join(f"\n  - {u['name']}: {u['exam']}" for u in lim["unknown"])
