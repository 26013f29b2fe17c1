"""`hypoderm data import scin`: build a training set from Google's SCIN dataset.

SCIN (Skin Condition Image Network, Ward et al. 2024) is served over public HTTPS from the
`dx-scin-public-data` bucket: `dataset/scin_cases.csv` (one row per case: self-reported data and up
to three `image_N_path`s), `dataset/scin_labels.csv` (dermatologist labels per case, including the
weighted differential `weighted_skin_condition_label`, a Python-literal dict condition -> weight
summing to 1) and `dataset/images/<id>.png`.

The importer selects cases whose weighted differential gives a chosen condition at least
`min_confidence`, maps SCIN's condition names to our class names (`CONDITION_MAP`, documented in
docs/SCIN.md), downloads each case's images (up to 3) concurrently with retries, verifies that every
image decodes, and writes an ImageFolder (`OUT/<class>/scin<case_id>_<n>.png`), `OUT/manifest.csv`
(`path,label,group,skin_type,...`, group = SCIN case id) and `OUT/SOURCE.md` (licence attribution,
date, exact filters). Re-running resumes: files already present (and matching the sha256 recorded in
the previous manifest, or decoding cleanly when none is recorded) are not downloaded again.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime as _dt
import difflib
import hashlib
import io
import os
import random
import re
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

from hypoderm import __version__

DEFAULT_BASE_URL = "https://storage.googleapis.com/dx-scin-public-data"
CASES_CSV = "dataset/scin_cases.csv"
LABELS_CSV = "dataset/scin_labels.csv"
LICENSE_URL = "https://github.com/google-research-datasets/scin/blob/main/LICENSE"
REPO_URL = "https://github.com/google-research-datasets/scin"

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

DEFAULT_MIN_CONFIDENCE = 0.5
MAX_IMAGES_PER_CASE = 3
MAX_WORKERS = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024  # SCIN photos are a few MB at most; refuse anything absurd
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = f"hypoderm/{__version__} (SCIN importer; +{REPO_URL})"
MANIFEST_NAME = "manifest.csv"
SOURCE_NAME = "SOURCE.md"
TMP_DIR_NAME = ".scin-tmp"

# Fitzpatrick values other than FST1..FST6 ("NONE_SELECTED", "NONE_IDENTIFIED", empty) mean unknown.
_FST_RE = re.compile(r"^FST([1-6])$")
# A comma followed by a space stays inside a SCIN name ("Acute dermatitis, NOS").
_LIST_SPLIT_RE = re.compile(r";|,(?! )")


class ScinImportError(RuntimeError):
    """A fatal problem (metadata unreachable, nothing selected, bad arguments): message is for users."""


class DownloadError(RuntimeError):
    """One URL could not be fetched; `str(e)` says why (HTTP status, network error, attempts)."""


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


@dataclass
class ImageOutcome:
    """Result of fetching one image."""

    case: ScinCase
    index: int
    source_path: str
    dest: Path
    status: str  # "downloaded" | "skipped" | "failed"
    sha256: str | None = None
    error: str | None = None


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


# --------------------------------------------------------------------------------------------
# Parsing SCIN's CSVs
# --------------------------------------------------------------------------------------------


def _norm(name: str) -> str:
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
    table = {_norm(k): (k, v) for k, v in CONDITION_MAP.items()}
    mapping: dict[str, str] = {}
    display: dict[str, str] = {}

    def add(scin_name: str, cls: str) -> None:
        key = _norm(scin_name)
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
        elif _norm(item) in table:
            scin_name, cls = table[_norm(item)]
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


def _monk(value: str | None) -> str | None:
    """Monk skin tone 1..10 ("4.0" in the CSV, because pandas wrote it as a float) -> "4"."""
    try:
        tone = float((value or "").strip())
    except ValueError:
        return None
    return str(int(tone)) if tone.is_integer() and 1 <= tone <= 10 else None


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
            seen_names.add(_norm(name))
            display.setdefault(_norm(name), name)
        if weights:
            top = max(weights, key=lambda n: weights[n])
            if _norm(top) not in mapping:
                selection.unmapped_conditions[top] += 1
        passing = [(w, n) for n, w in weights.items() if _norm(n) in mapping and w >= min_confidence]
        if not passing:
            continue
        passing.sort(reverse=True)
        best_weight, best_name = passing[0]
        label = mapping[_norm(best_name)]
        if any(w == best_weight and mapping[_norm(n)] != label for w, n in passing[1:]):
            selection.ambiguous_cases += 1
            continue
        images = tuple(p.strip() for p in (row.get(c) or "" for c in image_cols) if p.strip())
        if not images:
            selection.cases_without_images += 1
            continue
        # Use the data's own spelling of the condition in the report, not the table's.
        display[_norm(best_name)] = best_name
        selection.matched_cases[label] += 1
        by_class[label].append(ScinCase(
            case_id=case_id,
            label=label,
            scin_condition=best_name,
            weight=best_weight,
            image_paths=images,
            fitzpatrick_dermatologist=consensus_fitzpatrick(
                label_row.get(f"dermatologist_fitzpatrick_skin_type_label_{i}") for i in (1, 2, 3)),
            fitzpatrick_self_reported=consensus_fitzpatrick([row.get("fitzpatrick_skin_type")]),
            monk_skin_tone_us=_monk(label_row.get("monk_skin_tone_label_us")),
            monk_skin_tone_india=_monk(label_row.get("monk_skin_tone_label_india")),
        ))

    for key in mapping:
        if key not in seen_names:
            close = difflib.get_close_matches(key, sorted(seen_names), n=1, cutoff=0.75)
            selection.missing_conditions.append((display[key], display[close[0]] if close else None))

    queues = {cls: sorted(items, key=lambda c: c.case_id) for cls, items in sorted(by_class.items())}
    chosen: list[ScinCase] = []
    while any(queues.values()) and (max_cases is None or len(chosen) < max_cases):
        for cls in list(queues):
            if queues[cls] and (max_cases is None or len(chosen) < max_cases):
                chosen.append(queues[cls].pop(0))
    selection.cases = chosen
    return selection


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


def fetch_bytes(
    url: str,
    *,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 1.0,
    max_bytes: int = MAX_IMAGE_BYTES,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """GET `url` with up to `retries` retries on 5xx/429/timeouts/connection errors.

    Waits `backoff * 2**attempt` seconds (plus up to 25 % jitter, so parallel workers do not retry
    in lock-step) between attempts. 4xx other than 408/425/429 fail at once: a missing file stays
    missing. Raises DownloadError with the reason.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1) * (1 + random.random() / 4))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > max_bytes:
                    raise DownloadError(f"{url}: file too large ({int(length)} bytes > limit {max_bytes})")
                data = response.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise DownloadError(f"{url}: file too large (> limit {max_bytes} bytes)")
                if length is not None and length.isdigit() and len(data) != int(length):
                    # A connection cut mid-body; urllib does not always notice on its own.
                    last_error = f"truncated response ({len(data)} of {length} bytes)"
                    continue
                return data
        except urllib.error.HTTPError as e:
            if e.code not in RETRYABLE_STATUS:
                reason = "not found" if e.code == 404 else (e.reason or "HTTP error")
                raise DownloadError(f"{url}: {reason} (HTTP {e.code})") from None
            last_error = f"HTTP {e.code} {e.reason or ''}".strip()
        except urllib.error.URLError as e:
            last_error = f"network error: {e.reason}"
        except (TimeoutError, ConnectionError, HTTPException, OSError) as e:
            last_error = f"network error: {type(e).__name__}: {e}"
    raise DownloadError(f"{url}: {last_error}, gave up after {retries + 1} attempts")


def _url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _check_image_bytes(data: bytes) -> None:
    """Raise ValueError with a specific reason when `data` is not a fully decodable image."""
    from hypoderm.data.io import ImageLoadError, load_rgb_bytes

    try:
        load_rgb_bytes(data)
    except ImageLoadError as e:
        raise ValueError(str(e)) from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_filename(case_id: str, index: int, source_path: str) -> str:
    """`scin<case_id>_<n><ext>`: case ids can start with '-', which a prefix keeps off CLI flags."""
    suffix = PurePosixPath(source_path).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = ".png"
    safe_id = re.sub(r"[^0-9A-Za-z_-]", "_", case_id)
    return f"scin{safe_id}_{index}{suffix}"


def fetch_image(
    case: ScinCase,
    index: int,
    source_path: str,
    out: Path,
    base_url: str,
    known_sha256: dict[str, str],
    **http: float,
) -> ImageOutcome:
    """Download one image to `out/<label>/`, or skip it when it is already there and valid.

    The bytes are checked (sha256 against the previous manifest when it has one, else a full
    decode) before anything is written; the file is written to a temporary name under
    `out/.scin-tmp/` and renamed, so an interrupted or failed download never leaves a partial image
    in a class folder.
    """
    dest = out / case.label / image_filename(case.case_id, index, source_path)
    rel = dest.relative_to(out).as_posix()
    outcome = ImageOutcome(case=case, index=index, source_path=source_path, dest=dest, status="failed")
    if dest.is_file():
        data = dest.read_bytes()
        sha = _sha256(data)
        expected = known_sha256.get(rel)
        if expected is not None:
            valid = sha == expected
        else:
            try:
                _check_image_bytes(data)
                valid = True
            except ValueError:
                valid = False
        if valid:
            outcome.status, outcome.sha256 = "skipped", sha
            return outcome
    try:
        data = fetch_bytes(_url(base_url, source_path), **http)  # type: ignore[arg-type]
    except DownloadError as e:
        outcome.error = str(e)
        return outcome
    try:
        _check_image_bytes(data)
    except ValueError as e:
        outcome.error = f"{_url(base_url, source_path)}: not a usable image ({e})"
        return outcome
    tmp_dir = out / TMP_DIR_NAME
    tmp_dir.mkdir(parents=True, exist_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{dest.name}.{os.getpid()}.{threading.get_ident()}.part"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    outcome.status, outcome.sha256 = "downloaded", _sha256(data)
    return outcome


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------

MANIFEST_COLUMNS = [
    "path", "label", "group", "skin_type", "skin_type_source", "monk_skin_tone_us",
    "monk_skin_tone_india", "fitzpatrick_self_reported", "fitzpatrick_dermatologist",
    "scin_case_id", "scin_condition", "scin_weight", "scin_image_path", "sha256",
]


def _read_previous_sha256(manifest: Path) -> dict[str, str]:
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


# --------------------------------------------------------------------------------------------
# The importer
# --------------------------------------------------------------------------------------------


def _class_dirs(out: Path) -> set[str]:
    return {d.name for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")}


def import_scin(
    out: Path | str,
    conditions: Sequence[str] = DEFAULT_CONDITIONS,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    base_url: str = DEFAULT_BASE_URL,
    max_cases: int | None = None,
    workers: int = 4,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 1.0,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> ImportReport:
    """Download the selected SCIN cases into `out` and write manifest.csv and SOURCE.md.

    Raises ScinImportError when the metadata cannot be fetched or parsed, or nothing matches.
    Individual images that fail (missing, corrupt, server errors after retries) are reported in the
    returned report and in SOURCE.md, and left out of the manifest.
    """
    from tqdm import tqdm

    if not 1 <= workers <= MAX_WORKERS:
        raise ScinImportError(f"--workers must be 1..{MAX_WORKERS} (a public bucket: stay polite), got {workers}")
    if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
        raise ScinImportError(f"--base-url must be an http:// or https:// URL, got {base_url!r}")
    if retries < 0 or timeout <= 0:
        raise ScinImportError(f"--retries must be >= 0 and --timeout > 0, got {retries} and {timeout}")
    out = Path(out)
    http = {"timeout": timeout, "retries": retries, "backoff": backoff}
    texts: dict[str, str] = {}
    csv_sha256: dict[str, str] = {}
    for name in (CASES_CSV, LABELS_CSV):
        url = _url(base_url, name)
        try:
            data = fetch_bytes(url, max_bytes=1 << 30, **http)
        except DownloadError as e:
            raise ScinImportError(f"cannot fetch SCIN metadata: {e}") from None
        try:
            texts[name] = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ScinImportError(f"{url} is not a UTF-8 CSV file") from None
        csv_sha256[name] = _sha256(data)

    selection = select_cases(texts[CASES_CSV], texts[LABELS_CSV], conditions, min_confidence, max_cases)
    for name, close in selection.missing_conditions:
        log(f"warning: condition {name!r} does not occur in scin_labels.csv"
            + (f" (did you mean {close!r}?)" if close else ""))
    if not selection.cases:
        raise ScinImportError(
            f"no SCIN case has a chosen condition with weight >= {min_confidence}; "
            f"conditions: {', '.join(sorted(selection.display_names[k] for k in selection.conditions))}")

    out.mkdir(parents=True, exist_ok=True)
    known = _read_previous_sha256(out / MANIFEST_NAME)
    jobs = [(case, i, path) for case in selection.cases for i, path in enumerate(case.image_paths, 1)]
    outcomes: list[ImageOutcome] = []
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(fetch_image, case, i, path, out, base_url, known, **http)
                   for case, i, path in jobs]
        bar = tqdm(as_completed(futures), total=len(futures), desc="SCIN images", unit="img",
                   disable=not progress, file=sys.stderr)
        for future in bar:
            outcome = future.result()
            outcomes.append(outcome)
            if outcome.status == "failed":
                message = f"error: case {outcome.case.case_id} image {outcome.index}: {outcome.error}"
                # tqdm.write keeps the message from tearing the progress bar.
                bar.write(message, file=sys.stderr) if progress else log(message)
    finally:
        # On Ctrl-C or a disk error, drop the queued downloads instead of finishing them all.
        pool.shutdown(wait=True, cancel_futures=True)
    tmp_dir = out / TMP_DIR_NAME
    if tmp_dir.is_dir() and not any(tmp_dir.iterdir()):
        tmp_dir.rmdir()

    report = ImportReport(out=out, manifest=write_manifest(out, outcomes), selection=selection,
                          outcomes=outcomes)
    listed = {o.dest for o in outcomes if o.status != "failed"}
    stray = [p for cls in sorted({c.label for c in selection.cases} | _class_dirs(out))
             for p in sorted((out / cls).glob("scin*")) if p.is_file() and p not in listed]
    if stray:
        log(f"warning: {len(stray)} file(s) under {out} are not in this manifest (left by a run with other "
            f"filters?), e.g. {stray[0].relative_to(out).as_posix()}; an ImageFolder view of {out} would "
            "include them: use a fresh --out or delete them")
    write_source_md(report, base_url=base_url, requested=list(conditions), min_confidence=min_confidence,
                    max_cases=max_cases, csv_sha256=csv_sha256)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (ImageFolder + manifest.csv)")
    parser.add_argument(
        "--conditions", nargs="+", default=None, metavar="LIST",
        help="classes or SCIN condition names, separated by ';' or ',' (a comma followed by a space "
             "stays inside a name, e.g. 'Acute dermatitis, NOS'); 'SCIN name=class' maps a name "
             f"explicitly. Default: {','.join(DEFAULT_CONDITIONS)} (see docs/SCIN.md)")
    parser.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE, metavar="P",
                        help="minimum weight of the condition in SCIN's weighted differential "
                             f"(default {DEFAULT_MIN_CONFIDENCE})")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"bucket URL (default {DEFAULT_BASE_URL})")
    parser.add_argument("--max-cases", type=int, default=None, metavar="N",
                        help="import at most N cases, round-robin over classes")
    parser.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--retries", type=int, default=4, help="retries on server/network errors (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    requested = split_condition_list(args.conditions) if args.conditions else list(DEFAULT_CONDITIONS)
    try:
        report = import_scin(
            args.out, conditions=requested, min_confidence=args.min_confidence, base_url=args.base_url,
            max_cases=args.max_cases, workers=args.workers, timeout=args.timeout, retries=args.retries,
            progress=not args.no_progress)
    except ScinImportError as e:
        print(f"hypoderm data import scin: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"hypoderm data import scin: error: cannot write to {args.out}: {e}", file=sys.stderr)
        return 1
    sel = report.selection
    per_class = Counter(o.case.label for o in report.outcomes if o.status != "failed")
    print(f"selected {len(sel.cases)} SCIN cases; images: {report.count('downloaded')} downloaded, "
          f"{report.count('skipped')} already present, {report.count('failed')} failed")
    for cls in sorted(set(sel.conditions.values())):
        print(f"  {cls:<36} {sum(c.label == cls for c in sel.cases):>5} cases {per_class.get(cls, 0):>6} images")
    print(f"manifest: {report.manifest}\nsource and licence: {report.out / SOURCE_NAME}")
    if report.failures:
        print(f"warning: {len(report.failures)} image(s) could not be fetched and are not in the manifest "
              f"(listed in {SOURCE_NAME}); re-run to retry them.", file=sys.stderr)
    return 0
