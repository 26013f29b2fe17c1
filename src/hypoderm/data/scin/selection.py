"""Which SCIN cases to import: parse `scin_cases.csv` and `scin_labels.csv` and select the cases whose
weighted differential gives a chosen condition at least `min_confidence` (no network).
"""

from __future__ import annotations

import csv
import difflib
import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypoderm.data.scin.labels import (
    DEFAULT_CONDITIONS,
    ScinImportError,
    consensus_fitzpatrick,
    monk_tone,
    normalise_name,
    parse_weighted_label,
    resolve_conditions,
)

CASES_CSV = "dataset/scin_cases.csv"

LABELS_CSV = "dataset/scin_labels.csv"

DEFAULT_MIN_CONFIDENCE = 0.5

MAX_IMAGES_PER_CASE = 3


@dataclass(frozen=True)
class ScinCase:
    """One selected SCIN case: its class, the SCIN condition that chose it and its skin metadata."""

    case_id: str
    label: str
    scin_condition: str
    weight: float
    image_paths: tuple[str, ...]
    fitzpatrick_dermatologist: str | None = None
    fitzpatrick_self_reported: str | None = None
    monk_skin_tone_us: str | None = None
    monk_skin_tone_india: str | None = None

    @property
    def skin_type(self) -> str | None:
        """Fitzpatrick type for the manifest: dermatologist estimate, else the self-report."""
        return self.fitzpatrick_dermatologist or self.fitzpatrick_self_reported


@dataclass
class Selection:
    """The cases chosen and what the filters saw, for the summary and SOURCE.md."""

    cases: list[ScinCase]
    conditions: dict[str, str]  # normalised SCIN name -> class
    display_names: dict[str, str]  # normalised SCIN name -> spelling used in the data (or table)
    matched_cases: Counter = field(default_factory=Counter)  # class -> cases passing the filter
    missing_conditions: list[tuple[str, str | None]] = field(default_factory=list)  # (name, closest)
    unmapped_conditions: Counter = field(default_factory=Counter)  # SCIN name -> cases (top label)
    ambiguous_cases: int = 0
    cases_without_images: int = 0
    cases_without_labels: int = 0
    total_cases: int = 0


def _read_csv(text: str, name: str, required: Sequence[str]) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise ScinImportError(f"{name} lacks column(s) {', '.join(missing)}; is it really SCIN's {name}?")
    return list(reader)


def select_cases(
    cases_csv: str,
    labels_csv: str,
    conditions: Sequence[str] = DEFAULT_CONDITIONS,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_cases: int | None = None,
) -> Selection:
    """Choose the cases to import from the text of the two SCIN CSVs.

    A case is kept when one chosen SCIN condition has weight >= `min_confidence` in its
    `weighted_skin_condition_label`; when several chosen conditions pass, the heaviest wins, and an
    exact tie between two classes drops the case as ambiguous. `max_cases` keeps that many cases in
    total, taken round-robin over classes (in case-id order) so a small number still covers every
    class.
    """
    if not 0.0 < min_confidence <= 1.0:
        raise ScinImportError(f"--min-confidence must be in (0, 1], got {min_confidence}")
    if max_cases is not None and max_cases < 1:
        raise ScinImportError(f"--max-cases must be at least 1, got {max_cases}")
    mapping, display = resolve_conditions(list(conditions))
    image_cols = [f"image_{i}_path" for i in range(1, MAX_IMAGES_PER_CASE + 1)]
    cases_rows = _read_csv(cases_csv, "scin_cases.csv", ["case_id", *image_cols])
    label_rows = _read_csv(labels_csv, "scin_labels.csv", ["case_id", "weighted_skin_condition_label"])
    labels_by_case = {row["case_id"].strip(): row for row in label_rows}

    selection = Selection(cases=[], conditions=mapping, display_names=display)
    seen_names: set[str] = set()
    by_class: dict[str, list[ScinCase]] = defaultdict(list)
    for row in cases_rows:
        selection.total_cases += 1
        case_id = row["case_id"].strip()
        label_row = labels_by_case.get(case_id)
        if label_row is None:
            selection.cases_without_labels += 1
            continue
        try:
            weights = parse_weighted_label(label_row.get("weighted_skin_condition_label"))
        except ValueError as e:
            raise ScinImportError(f"scin_labels.csv, case {case_id}: {e}") from None
        for name in weights:
            seen_names.add(normalise_name(name))
            display.setdefault(normalise_name(name), name)
        if weights:
            top = max(weights, key=lambda n: weights[n])
            if normalise_name(top) not in mapping:
                selection.unmapped_conditions[top] += 1
        passing = [(w, n) for n, w in weights.items() if normalise_name(n) in mapping and w >= min_confidence]
        if not passing:
            continue
        passing.sort(reverse=True)
        best_weight, best_name = passing[0]
        label = mapping[normalise_name(best_name)]
        if any(w == best_weight and mapping[normalise_name(n)] != label for w, n in passing[1:]):
            selection.ambiguous_cases += 1
            continue
        images = tuple(p.strip() for p in (row.get(c) or "" for c in image_cols) if p.strip())
        if not images:
            selection.cases_without_images += 1
            continue
        # Use the data's own spelling of the condition in the report, not the table's.
        display[normalise_name(best_name)] = best_name
        selection.matched_cases[label] += 1
        by_class[label].append(_case(case_id, label, best_name, best_weight, images, row, label_row))

    for key in mapping:
        if key not in seen_names:
            close = difflib.get_close_matches(key, sorted(seen_names), n=1, cutoff=0.75)
            selection.missing_conditions.append((display[key], display[close[0]] if close else None))

    selection.cases = _round_robin(by_class, max_cases)
    return selection


def _case(case_id: str, label: str, scin_condition: str, weight: float, images: tuple[str, ...],
          row: dict[str, str], label_row: dict[str, str]) -> ScinCase:
    """A selected case with its skin metadata from both CSV rows."""
    return ScinCase(
        case_id=case_id,
        label=label,
        scin_condition=scin_condition,
        weight=weight,
        image_paths=images,
        fitzpatrick_dermatologist=consensus_fitzpatrick(
            label_row.get(f"dermatologist_fitzpatrick_skin_type_label_{i}") for i in (1, 2, 3)),
        fitzpatrick_self_reported=consensus_fitzpatrick([row.get("fitzpatrick_skin_type")]),
        monk_skin_tone_us=monk_tone(label_row.get("monk_skin_tone_label_us")),
        monk_skin_tone_india=monk_tone(label_row.get("monk_skin_tone_label_india")),
    )


def _round_robin(by_class: dict[str, list[ScinCase]], max_cases: int | None) -> list[ScinCase]:
    """Cases taken one per class in turn (each class in case-id order), at most `max_cases`, so a
    small import still covers every class."""
    queues = {cls: sorted(items, key=lambda c: c.case_id) for cls, items in sorted(by_class.items())}
    chosen: list[ScinCase] = []
    while any(queues.values()) and (max_cases is None or len(chosen) < max_cases):
        for cls in list(queues):
            if queues[cls] and (max_cases is None or len(chosen) < max_cases):
                chosen.append(queues[cls].pop(0))
    return chosen
