"""What an import leaves next to the images: `manifest.csv` (train's CSV format, group = SCIN case)
and `SOURCE.md` (licence attribution, date, exact filters, failures).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hypoderm import __version__
from hypoderm.data.scin.fetch import REPO_URL, ImageOutcome
from hypoderm.data.scin.selection import CASES_CSV, LABELS_CSV, Selection

LICENSE_URL = "https://github.com/google-research-datasets/scin/blob/main/LICENSE"

MANIFEST_NAME = "manifest.csv"

SOURCE_NAME = "SOURCE.md"


@dataclass
class ImportReport:
    """What `import_scin` did."""

    out: Path
    manifest: Path
    selection: Selection
    outcomes: list[ImageOutcome]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failures(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


MANIFEST_COLUMNS = [
    "path", "label", "group", "skin_type", "skin_type_source", "monk_skin_tone_us",
    "monk_skin_tone_india", "fitzpatrick_self_reported", "fitzpatrick_dermatologist",
    "scin_case_id", "scin_condition", "scin_weight", "scin_image_path", "sha256",
]


def read_previous_sha256(manifest: Path) -> dict[str, str]:
    if not manifest.is_file():
        return {}
    try:
        with manifest.open(newline="", encoding="utf-8") as f:
            return {r["path"]: r["sha256"] for r in csv.DictReader(f) if r.get("path") and r.get("sha256")}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError):
        return {}  # an unreadable old manifest only means every file is re-verified by decoding


def _groups(outcomes: list[ImageOutcome]) -> dict[str, str]:
    """case id -> group. Cases sharing a byte-identical photo are joined into one group.

    SCIN's README lists 15 images that appear in several cases; joining those cases keeps one
    photo out of two splits. The group is the smallest case id of the joined cases.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_case_of: dict[str, str] = {}
    for o in outcomes:
        find(o.case.case_id)
        if o.sha256 is None:
            continue
        other = first_case_of.setdefault(o.sha256, o.case.case_id)
        a, b = find(other), find(o.case.case_id)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return {case_id: find(case_id) for case_id in parent}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)


def write_manifest(out: Path, outcomes: list[ImageOutcome]) -> Path:
    """Write `out/manifest.csv` for the images that are present (downloaded or skipped)."""
    groups = _groups([o for o in outcomes if o.status != "failed"])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    good = sorted((o for o in outcomes if o.status != "failed"), key=lambda o: (o.case.label, o.dest.name))
    for o in good:
        c = o.case
        source = "dermatologist" if c.fitzpatrick_dermatologist else ("self_reported" if c.skin_type else "")
        writer.writerow({
            "path": o.dest.relative_to(out).as_posix(),
            "label": c.label,
            "group": groups[c.case_id],
            "skin_type": c.skin_type or "",
            "skin_type_source": source,
            "monk_skin_tone_us": c.monk_skin_tone_us or "",
            "monk_skin_tone_india": c.monk_skin_tone_india or "",
            "fitzpatrick_self_reported": c.fitzpatrick_self_reported or "",
            "fitzpatrick_dermatologist": c.fitzpatrick_dermatologist or "",
            "scin_case_id": c.case_id,
            "scin_condition": c.scin_condition,
            "scin_weight": f"{c.weight:.4g}",
            "scin_image_path": o.source_path,
            "sha256": o.sha256 or "",
        })
    manifest = out / MANIFEST_NAME
    _write_atomic(manifest, buffer.getvalue())
    return manifest


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


# The attribution, licence terms and modifications the SCIN Data Use License asks for (top of SOURCE.md).
LICENCE_MD: tuple[str, ...] = (
    "# Source of this folder: the SCIN dataset (Google Research)",
    "",
    "Images and labels in this folder come from the **Skin Condition Image Network (SCIN)** dataset,",
    f"created by Google Research in collaboration with Stanford Medicine ({REPO_URL}),",
    "released under the **SCIN Data Use License** "
    f"({LICENSE_URL}). Copyright Google LLC. The dataset is provided",
    "AS-IS and AS-AVAILABLE, without warranties of any kind (see Section 5 of the SCIN Data Use",
    "License). This folder is licensed under and subject to the terms of the SCIN Data Use License.",
    "",
    "**Restriction (Section 3(b) of the licence): you may not make any attempt to re-identify or",
    "re-link any of the individual data subjects.** Re-identification terminates all rights.",
    "",
    "Modifications (Section 3(a)(1)(b)): images were selected by dermatologist label, renamed to",
    "`scin<case_id>_<n>.<ext>` and sorted into one folder per class; the image bytes are unchanged.",
    "Labels were mapped from SCIN condition names to hypoderm class names (table below).",
    "",
    "Cite: Ward A, Li J, Wang J, et al. *Crowdsourcing Dermatology Images with Google Search Ads:",
    "Creating a Real-World Skin Condition Dataset.* arXiv:2402.18545 (2024).",
    "",
    "Labels were assigned retrospectively by dermatologists from photos; they are not clinical",
    "diagnoses. hypoderm is a decision aid, not a medical device.",
    "",
)


def write_source_md(
    report: ImportReport,
    *,
    base_url: str,
    requested: Sequence[str],
    min_confidence: float,
    max_cases: int | None,
    csv_sha256: dict[str, str],
    now: _dt.datetime | None = None,
) -> Path:
    """Write `out/SOURCE.md`: licence attribution, date, the exact filters and what came of them."""
    sel = report.selection
    now = now or _dt.datetime.now(_dt.timezone.utc)
    images = Counter(o.case.label for o in report.outcomes if o.status != "failed")
    cases = Counter(c.label for c in sel.cases)
    lines = [
        *LICENCE_MD,
        "## How this folder was made",
        "",
        f"- Date (UTC): {now.strftime('%Y-%m-%d %H:%M:%S')}",
        f"- Tool: hypoderm {__version__}, `hypoderm data import scin`",
        f"- Base URL: {base_url}",
        f"- Metadata: `{CASES_CSV}` (sha256 {csv_sha256.get(CASES_CSV, '?')}), "
        f"`{LABELS_CSV}` (sha256 {csv_sha256.get(LABELS_CSV, '?')})",
        f"- `--conditions`: {'; '.join(requested)}",
        f"- `--min-confidence`: {min_confidence} (weight of the condition in SCIN's "
        "`weighted_skin_condition_label`; heaviest chosen condition wins; exact ties between "
        "classes dropped)",
        f"- `--max-cases`: {max_cases if max_cases is not None else 'none'}"
        + (" (taken round-robin over classes in case-id order)" if max_cases else ""),
        "- Images per case: up to 3 (`image_1_path`..`image_3_path`)",
        "- `group` = SCIN `case_id` (cases sharing a byte-identical photo share the smallest case id)",
        "- `skin_type` = dermatologist-estimated Fitzpatrick type (consensus of up to 3 labels: the "
        "most frequent, ties -> lower median), else the self-reported one; Monk skin tone in "
        "`monk_skin_tone_us` / `monk_skin_tone_india`",
        "",
        "## Condition mapping used",
        "",
        "| SCIN condition | class | cases selected | images |",
        "|---|---|---|---|",
    ]
    by_condition = Counter(c.scin_condition for c in sel.cases)
    images_by_condition = Counter(o.case.scin_condition for o in report.outcomes if o.status != "failed")
    for key, cls in sorted(sel.conditions.items(), key=lambda kv: (kv[1], kv[0])):
        name = sel.display_names.get(key, key)
        lines.append(f"| {_md_escape(name)} | `{cls}` | {by_condition.get(name, 0)} | "
                     f"{images_by_condition.get(name, 0)} |")
    lines += ["", "## Result", "", "| class | cases | images |", "|---|---|---|"]
    for cls in sorted(set(sel.conditions.values())):
        lines.append(f"| `{cls}` | {cases.get(cls, 0)} | {images.get(cls, 0)} |")
    lines += [
        "",
        f"SCIN cases read: {sel.total_cases}; without labels: {sel.cases_without_labels}; "
        f"ambiguous (tie between classes): {sel.ambiguous_cases}; "
        f"passing the filter but without images: {sel.cases_without_images}.",
    ]
    if sel.missing_conditions:
        lines += ["", "## Condition names not found in scin_labels.csv", ""]
        for name, close in sel.missing_conditions:
            lines.append(f"- {_md_escape(name)}" + (f" (closest SCIN name: {_md_escape(close)})" if close else ""))
    if report.failures:
        lines += ["", "## Images that could not be fetched (not in the manifest)", ""]
        lines += [f"- case {o.case.case_id}: {o.error}" for o in report.failures]
    if sel.unmapped_conditions:
        lines += ["", "## Most frequent top conditions not selected (SCIN name: cases)", ""]
        lines += [f"- {_md_escape(n)}: {k}" for n, k in sel.unmapped_conditions.most_common(30)]
    path = report.out / SOURCE_NAME
    _write_atomic(path, "\n".join(lines) + "\n")
    return path
