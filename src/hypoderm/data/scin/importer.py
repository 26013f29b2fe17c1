"""`hypoderm data import scin`: select, fetch concurrently, write the manifest and SOURCE.md; the
command parses its flags, calls `import_scin` and prints the summary.
"""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from hypoderm.data.scin.fetch import (
    DEFAULT_BASE_URL,
    TMP_DIR_NAME,
    DownloadError,
    ImageOutcome,
    bucket_url,
    fetch_bytes,
    fetch_image,
    sha256_hex,
)
from hypoderm.data.scin.labels import DEFAULT_CONDITIONS, ScinImportError
from hypoderm.data.scin.report import (
    MANIFEST_NAME,
    ImportReport,
    read_previous_sha256,
    write_manifest,
    write_source_md,
)
from hypoderm.data.scin.selection import CASES_CSV, DEFAULT_MIN_CONFIDENCE, LABELS_CSV, Selection, select_cases

MAX_WORKERS = 16


def _class_dirs(out: Path) -> set[str]:
    return {d.name for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")}


def _fetch_metadata(base_url: str, http: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(text, sha256) of scin_cases.csv and scin_labels.csv by name; ScinImportError when unusable."""
    texts: dict[str, str] = {}
    csv_sha256: dict[str, str] = {}
    for name in (CASES_CSV, LABELS_CSV):
        url = bucket_url(base_url, name)
        try:
            data = fetch_bytes(url, max_bytes=1 << 30, **http)
        except DownloadError as e:
            # the network failed, not the user: exit code 1
            raise ScinImportError(f"cannot fetch SCIN metadata: {e}", exit_code=1) from None
        try:
            texts[name] = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ScinImportError(f"{url} is not a UTF-8 CSV file") from None
        csv_sha256[name] = sha256_hex(data)
    return texts, csv_sha256


def _fetch_images(selection: Selection, out: Path, base_url: str, known: dict[str, str], workers: int,
                  http: dict[str, Any], progress: bool, log: Callable[[str], None]) -> list[ImageOutcome]:
    """Every image of the selected cases, `workers` at a time; failures are outcomes, not exceptions."""
    from tqdm import tqdm

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
    return outcomes


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

    if not 1 <= workers <= MAX_WORKERS:
        raise ScinImportError(f"--workers must be 1..{MAX_WORKERS} (a public bucket: stay polite), got {workers}")
    if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
        raise ScinImportError(f"--base-url must be an http:// or https:// URL, got {base_url!r}")
    if retries < 0 or timeout <= 0:
        raise ScinImportError(f"--retries must be >= 0 and --timeout > 0, got {retries} and {timeout}")
    out = Path(out)
    http: dict[str, Any] = {"timeout": timeout, "retries": retries, "backoff": backoff}
    texts, csv_sha256 = _fetch_metadata(base_url, http)

    selection = select_cases(texts[CASES_CSV], texts[LABELS_CSV], conditions, min_confidence, max_cases)
    for name, close in selection.missing_conditions:
        log(f"warning: condition {name!r} does not occur in scin_labels.csv"
            + (f" (did you mean {close!r}?)" if close else ""))
    if not selection.cases:
        raise ScinImportError(
            f"no SCIN case has a chosen condition with weight >= {min_confidence}; "
            f"conditions: {', '.join(sorted(selection.display_names[k] for k in selection.conditions))}")

    out.mkdir(parents=True, exist_ok=True)
    known = read_previous_sha256(out / MANIFEST_NAME)
    outcomes = _fetch_images(selection, out, base_url, known, workers, http, progress, log)
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
