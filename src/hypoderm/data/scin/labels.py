"""SCIN's label vocabulary: our condition table, weighted-differential parsing, condition-name
resolution and the skin-type consensus (pure functions, no I/O).
"""

from __future__ import annotations

import ast
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from hypoderm.errors import HypodermError

# SCIN condition name (as written in `weighted_skin_condition_label`) -> our class name.
# Names are matched case-insensitively with whitespace collapsed, so "Tinea versicolor" and
# "Tinea Versicolor" are the same key. Which names were confirmed in SCIN's published material and
# which were inferred is recorded in docs/SCIN.md.
CONDITION_MAP: dict[str, str] = {
    "Vitiligo": "vitiligo",
    "Tinea Versicolor": "tinea_versicolor",
    "Idiopathic guttate hypomelanosis": "idiopathic_guttate_hypomelanosis",
    "Lichen sclerosus": "lichen_sclerosus",
    "Post-Inflammatory hypopigmentation": "post_inflammatory_hypopigmentation",
    "Pityriasis alba": "pityriasis_alba",
}


# The default selection: every hypopigmented class of the table. SCIN has no dermatologist label for
# normal / no visible condition (see docs/SCIN.md), so there is no normal class by default.
DEFAULT_CONDITIONS: tuple[str, ...] = tuple(dict.fromkeys(CONDITION_MAP.values()))


# Fitzpatrick values other than FST1..FST6 ("NONE_SELECTED", "NONE_IDENTIFIED", empty) mean unknown.
_FST_RE = re.compile(r"^FST([1-6])$")


# A comma followed by a space stays inside a SCIN name ("Acute dermatitis, NOS").
_LIST_SPLIT_RE = re.compile(r";|,(?! )")


class ScinImportError(HypodermError, RuntimeError):
    """A fatal problem (metadata unreachable, nothing selected, bad arguments): message is for users."""


def normalise_name(name: str) -> str:
    return " ".join(name.split()).casefold()


def class_slug(name: str) -> str:
    """Our class-name spelling for a free-form name: lower case, non-alphanumerics -> `_`."""
    slug = re.sub(r"[^0-9a-z]+", "_", name.casefold()).strip("_")
    if not slug:
        raise ScinImportError(f"cannot make a class name from {name!r}")
    return slug


def parse_weighted_label(text: str | None) -> dict[str, float]:
    """Parse `weighted_skin_condition_label` (a Python dict literal) into {condition: weight}.

    Empty cells give {}. SCIN writes the dict with Python quoting, so `ast.literal_eval` (never
    `eval`) is the right parser; anything that is not a dict of numbers raises ValueError.
    """
    if text is None or not text.strip():
        return {}
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"weighted_skin_condition_label is not a dict literal: {text[:80]!r}") from e
    if not isinstance(value, dict):
        raise ValueError(f"weighted_skin_condition_label is not a dict: {text[:80]!r}")
    out: dict[str, float] = {}
    for key, weight in value.items():
        if not isinstance(key, str) or isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"weighted_skin_condition_label entry {key!r}: {weight!r} is not name: number")
        out[key] = float(weight)
    return out


def split_condition_list(values: Iterable[str]) -> list[str]:
    """Split `--conditions` values on `;` or on a comma not followed by a space."""
    items: list[str] = []
    for value in values:
        items += [item.strip() for item in _LIST_SPLIT_RE.split(value) if item.strip()]
    return items


def resolve_conditions(names: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Turn `--conditions` items into {normalised SCIN name: class} and {normalised: display name}.

    Each item is one of: a class name of `CONDITION_MAP` (selects every SCIN name mapped to it), a
    SCIN condition name (mapped by the table, else to its slug), or `SCIN name=class`.
    """
    by_class: dict[str, list[str]] = defaultdict(list)
    for scin_name, cls in CONDITION_MAP.items():
        by_class[cls].append(scin_name)
    table = {normalise_name(k): (k, v) for k, v in CONDITION_MAP.items()}
    mapping: dict[str, str] = {}
    display: dict[str, str] = {}

    def add(scin_name: str, cls: str) -> None:
        key = normalise_name(scin_name)
        if key in mapping and mapping[key] != cls:
            raise ScinImportError(
                f"SCIN condition {scin_name!r} is mapped to two classes: {mapping[key]!r} and {cls!r}")
        mapping[key] = cls
        display.setdefault(key, scin_name)

    if not names:
        raise ScinImportError("--conditions is empty")
    for item in names:
        if "=" in item:
            scin_name, _, cls = item.partition("=")
            if not scin_name.strip() or not cls.strip():
                raise ScinImportError(f"--conditions item {item!r}: expected 'SCIN name=class_name'")
            add(scin_name.strip(), class_slug(cls))
        elif item in by_class:
            for scin_name in by_class[item]:
                add(scin_name, item)
        elif normalise_name(item) in table:
            scin_name, cls = table[normalise_name(item)]
            add(scin_name, cls)
        else:
            add(item, class_slug(item))
    return mapping, display


def _fitzpatrick(value: str | None) -> int | None:
    match = _FST_RE.match((value or "").strip().upper())
    return int(match.group(1)) if match else None


def consensus_fitzpatrick(values: Iterable[str | None]) -> str | None:
    """Consensus of up to three dermatologist Fitzpatrick labels ("FST1".."FST6").

    The most frequent type; when several are equally frequent, the lower median of all labels
    (so FST3 + FST4 -> FST3). Unknown values are ignored; None when no label is usable.
    """
    types = [t for t in (_fitzpatrick(v) for v in values) if t is not None]
    if not types:
        return None
    counts = Counter(types).most_common()
    if len(counts) == 1 or counts[0][1] > counts[1][1]:
        return f"FST{counts[0][0]}"
    return f"FST{statistics.median_low(types)}"


def monk_tone(value: str | None) -> str | None:
    """Monk skin tone 1..10 ("4.0" in the CSV, because pandas wrote it as a float) -> "4"."""
    try:
        tone = float((value or "").strip())
    except ValueError:
        return None
    return str(int(tone)) if tone.is_integer() and 1 <= tone <= 10 else None
