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

One job per module: `labels` (condition table, label parsing), `selection` (which cases),
`fetch` (HTTP and one image), `report` (manifest.csv, SOURCE.md), `importer` (`import_scin` and the
command). This package re-exports their public names.
"""

from hypoderm.data.scin.fetch import (
                                      DEFAULT_BASE_URL,
                                      MAX_IMAGE_BYTES,
                                      RETRYABLE_STATUS,
                                      TMP_DIR_NAME,
                                      USER_AGENT,
                                      DownloadError,
                                      ImageOutcome,
                                      fetch_bytes,
                                      fetch_image,
                                      image_filename,
)
from hypoderm.data.scin.importer import MAX_WORKERS, import_scin
from hypoderm.data.scin.labels import (
                                      CONDITION_MAP,
                                      DEFAULT_CONDITIONS,
                                      ScinImportError,
                                      class_slug,
                                      consensus_fitzpatrick,
                                      parse_weighted_label,
                                      resolve_conditions,
                                      split_condition_list,
)
from hypoderm.data.scin.report import (
                                      LICENSE_URL,
                                      MANIFEST_COLUMNS,
                                      MANIFEST_NAME,
                                      SOURCE_NAME,
                                      ImportReport,
                                      write_manifest,
                                      write_source_md,
)
from hypoderm.data.scin.selection import (
                                      CASES_CSV,
                                      DEFAULT_MIN_CONFIDENCE,
                                      LABELS_CSV,
                                      MAX_IMAGES_PER_CASE,
                                      ScinCase,
                                      Selection,
                                      select_cases,
)

__all__ = [
    "CASES_CSV", "CONDITION_MAP", "DEFAULT_BASE_URL", "DEFAULT_CONDITIONS", "DEFAULT_MIN_CONFIDENCE", "LABELS_CSV",
    "LICENSE_URL", "MANIFEST_COLUMNS", "MANIFEST_NAME", "MAX_IMAGES_PER_CASE", "MAX_IMAGE_BYTES", "MAX_WORKERS",
    "RETRYABLE_STATUS", "SOURCE_NAME", "TMP_DIR_NAME", "USER_AGENT", "DownloadError", "ImageOutcome", "ImportReport",
    "ScinCase", "ScinImportError", "Selection", "class_slug", "consensus_fitzpatrick", "fetch_bytes", "fetch_image",
    "image_filename", "import_scin", "parse_weighted_label", "resolve_conditions", "select_cases",
    "split_condition_list", "write_manifest", "write_source_md",
]
