"""`hypoderm data import scin` against a fake SCIN bucket served on 127.0.0.1 (no network).

The fake layout uses SCIN's real CSV columns (scin_cases.csv / scin_labels.csv as listed in
google-research-datasets/scin's dataset_schema.md and scin_demo.ipynb) and Python-literal cells
as SCIN writes them, plus: one missing image (404), one corrupt image, one HTTP 500 that succeeds
on retry, and two cases sharing a byte-identical photo.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypoderm import cli
from hypoderm.data import scin

CASES_COLUMNS = [
    "case_id", "source", "release", "year", "age_group", "sex_at_birth", "fitzpatrick_skin_type",
    "race_ethnicity_white", "textures_flat", "body_parts_arm", "condition_symptoms_itching",
    "related_category", "condition_duration", "image_1_path", "image_2_path", "image_3_path",
    "image_1_shot_type", "image_2_shot_type", "image_3_shot_type",
]
LABELS_COLUMNS = [
    "case_id",
    "dermatologist_gradable_for_skin_condition_1", "dermatologist_gradable_for_skin_condition_2",
    "dermatologist_gradable_for_skin_condition_3",
    "dermatologist_skin_condition_on_label_name", "dermatologist_skin_condition_confidence",
    "weighted_skin_condition_label",
    "dermatologist_gradable_for_fitzpatrick_skin_type_1", "dermatologist_gradable_for_fitzpatrick_skin_type_2",
    "dermatologist_gradable_for_fitzpatrick_skin_type_3",
    "dermatologist_fitzpatrick_skin_type_label_1", "dermatologist_fitzpatrick_skin_type_label_2",
    "dermatologist_fitzpatrick_skin_type_label_3",
    "gradable_for_monk_skin_tone_india", "gradable_for_monk_skin_tone_us",
    "monk_skin_tone_label_india", "monk_skin_tone_label_us",
]

# case id -> (weighted label, number of images, self FST, dermatologist FSTs, monk us, monk india)
CASES: dict[str, tuple[dict[str, float], int, str, tuple[str, ...], str, str]] = {
    "-1000600354148496558": ({"Vitiligo": 0.8, "Eczema": 0.2}, 3, "FST4", ("FST5", "FST5", "FST4"), "7.0", "8.0"),
    "-1002039107727665188": ({"Tinea Versicolor": 0.55, "Tinea": 0.45}, 2, "FST2", (), "", ""),
    "1003358831658393077": ({"Vitiligo": 0.3, "Eczema": 0.7}, 1, "FST3", ("FST3",), "3.0", "4.0"),  # low weight
    "1004000000000000001": ({"Eczema": 1.0}, 2, "", ("FST2",), "2.0", "2.0"),  # not a chosen condition
    "1005000000000000002": ({"Idiopathic guttate hypomelanosis": 1.0}, 2, "NONE_SELECTED", ("FST3", "FST4"), "", ""),
    "1006000000000000003": ({"Vitiligo": 0.6, "Psoriasis": 0.4}, 2, "FST6", ("FST6",), "9.0", "10.0"),
    "1007000000000000004": ({"Vitiligo": 0.9, "Eczema": 0.1}, 2, "FST1", ("FST1", "FST2"), "1.0", "1.0"),
    "1008000000000000005": ({"Lichen sclerosus": 0.5, "Vitiligo": 0.5}, 1, "FST3", (), "", ""),  # tie
    "1009000000000000006": ({}, 1, "FST3", (), "", ""),  # no label
    "1010000000000000007": ({"Tinea Versicolor": 0.7, "Tinea": 0.3}, 2, "FST3", ("FST3",), "5.0", "5.0"),
    "1011000000000000008": ({"Tinea Versicolor": 1.0}, 3, "FST5", ("FST5",), "6.0", "6.0"),
    "1012000000000000009": ({"Vitiligo": 0.75, "Pityriasis alba": 0.25}, 2, "FST4", ("FST4",), "6.0", "6.0"),
    "1013000000000000010": ({"Tinea Versicolor": 0.6, "Vitiligo": 0.4}, 1, "FST2", ("FST2",), "3.0", "3.0"),
}
MISSING = ("1005000000000000002", 1)  # 404
CORRUPT = ("1006000000000000003", 1)  # bytes that are not an image
FLAKY = ("1007000000000000004", 1)  # HTTP 500 once, then OK
DUPLICATE = (("1012000000000000009", 2), ("1013000000000000010", 1))  # same photo bytes


def image_id(case_id: str, n: int) -> str:
    return str(int(hashlib.sha256(f"{case_id}/{n}".encode()).hexdigest()[:15], 16))


def image_path(case_id: str, n: int) -> str:
    return f"dataset/images/{image_id(case_id, n)}.png"


def png_bytes(seed: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def csv_text(columns: list[str], rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def build_layout() -> dict[str, bytes]:
    """bucket path -> bytes, in SCIN's layout."""
    files: dict[str, bytes] = {}
    case_rows, label_rows = [], []
    for seed, (case_id, (weights, n_images, sfst, dfst, monk_us, monk_in)) in enumerate(CASES.items()):
        row = {c: "" for c in CASES_COLUMNS}
        row.update(case_id=case_id, source="SCIN", release="1.0.0", year="2023", age_group="AGE_30_TO_39",
                   sex_at_birth="FEMALE", fitzpatrick_skin_type=sfst, related_category="PIGMENTARY_PROBLEM")
        for n in range(1, n_images + 1):
            row[f"image_{n}_path"] = image_path(case_id, n)
            row[f"image_{n}_shot_type"] = "CLOSE_UP"
            if (case_id, n) == CORRUPT:
                files[image_path(case_id, n)] = b"\x89PNG\r\n\x1a\n" + b"garbage" * 50
            elif (case_id, n) != MISSING:
                files[image_path(case_id, n)] = png_bytes(seed * 10 + n)
        case_rows.append(row)
        lab = {c: "" for c in LABELS_COLUMNS}
        names = list(weights)
        lab.update(
            case_id=case_id,
            dermatologist_gradable_for_skin_condition_1="True",
            dermatologist_skin_condition_on_label_name=repr(names) if names else "",
            dermatologist_skin_condition_confidence=repr([4] * len(names)) if names else "",
            weighted_skin_condition_label=repr(weights) if weights else "",
            monk_skin_tone_label_us=monk_us, monk_skin_tone_label_india=monk_in,
        )
        for i, fst in enumerate(dfst, 1):
            lab[f"dermatologist_gradable_for_fitzpatrick_skin_type_{i}"] = "YES"
            lab[f"dermatologist_fitzpatrick_skin_type_label_{i}"] = fst
        label_rows.append(lab)
    (a, an), (b, bn) = DUPLICATE
    files[image_path(b, bn)] = files[image_path(a, an)]
    files[scin.CASES_CSV] = csv_text(CASES_COLUMNS, case_rows).encode()
    files[scin.LABELS_CSV] = csv_text(LABELS_COLUMNS, label_rows).encode()
    return files


class FakeBucket:
    """A tiny HTTP server serving `files`; `fail_once` paths answer 500 on their first request."""

    def __init__(self, files: dict[str, bytes], fail_once: set[str] = frozenset()):
        self.files = dict(files)
        self.fail_once = set(fail_once)
        self.requests: list[str] = []
        self.lock = threading.Lock()
        bucket = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("/", 2)[-1]  # strip the "/bucket/" prefix
                with bucket.lock:
                    bucket.requests.append(path)
                    fail = path in bucket.fail_once
                    bucket.fail_once.discard(path)
                if fail:
                    self.send_error(500, "transient")
                    return
                data = bucket.files.get(path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/bucket"

    def image_requests(self) -> list[str]:
        with self.lock:
            return [p for p in self.requests if p.startswith("dataset/images/")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bucket():
    b = FakeBucket(build_layout(), fail_once={image_path(*FLAKY)})
    yield b
    b.close()


def run_import(bucket: FakeBucket, out: Path, **kw):
    kw.setdefault("min_confidence", 0.5)
    return scin.import_scin(out, base_url=bucket.base_url, backoff=0.01, timeout=5, progress=False,
                            log=lambda m: None, **kw)


def read_manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ pure parsing


def test_parse_weighted_label_reads_python_dict_literals_and_rejects_junk():
    assert scin.parse_weighted_label("{'Vitiligo': 0.69, 'Tinea Versicolor': 0.31}") == {
        "Vitiligo": 0.69, "Tinea Versicolor": 0.31}
    assert scin.parse_weighted_label("") == {}
    assert scin.parse_weighted_label(None) == {}
    with pytest.raises(ValueError, match="not a dict literal"):
        scin.parse_weighted_label("{'Vitiligo': __import__('os')}")
    with pytest.raises(ValueError, match="not a dict"):
        scin.parse_weighted_label("['Vitiligo']")


def test_consensus_fitzpatrick_majority_then_lower_median_and_unknowns_ignored():
    assert scin.consensus_fitzpatrick(["FST5", "FST5", "FST4"]) == "FST5"
    assert scin.consensus_fitzpatrick(["FST3", "FST4"]) == "FST3"
    assert scin.consensus_fitzpatrick(["FST2", "FST6", "FST4"]) == "FST4"
    assert scin.consensus_fitzpatrick(["NONE_IDENTIFIED", "", None]) is None
    assert scin.consensus_fitzpatrick(["fst6", None]) == "FST6"


def test_condition_list_and_name_mapping():
    assert scin.split_condition_list(["vitiligo,tinea_versicolor", "Acute dermatitis, NOS;Psoriasis"]) == [
        "vitiligo", "tinea_versicolor", "Acute dermatitis, NOS", "Psoriasis"]
    mapping, _ = scin.resolve_conditions(["vitiligo", "tinea versicolor", "Psoriasis", "Acne=acne_like"])
    assert mapping == {"vitiligo": "vitiligo", "tinea versicolor": "tinea_versicolor",
                       "psoriasis": "psoriasis", "acne": "acne_like"}
    # A class name selects every SCIN name the table maps to it.
    mapping, display = scin.resolve_conditions(["lichen_sclerosus"])
    assert mapping == {"lichen sclerosus": "lichen_sclerosus"} and display["lichen sclerosus"] == "Lichen sclerosus"
    with pytest.raises(scin.ScinImportError, match="two classes"):
        scin.resolve_conditions(["Vitiligo", "Vitiligo=white_patches"])


def test_default_conditions_cover_the_hypopigmented_table():
    assert set(scin.DEFAULT_CONDITIONS) == set(scin.CONDITION_MAP.values())
    assert {"vitiligo", "tinea_versicolor", "idiopathic_guttate_hypomelanosis", "lichen_sclerosus",
            "post_inflammatory_hypopigmentation"} <= set(scin.DEFAULT_CONDITIONS)


def test_select_cases_filters_maps_and_reports_unknown_names():
    files = build_layout()
    cases_csv, labels_csv = files[scin.CASES_CSV].decode(), files[scin.LABELS_CSV].decode()
    sel = scin.select_cases(cases_csv, labels_csv, ["vitiligo", "tinea_versicolor", "Lichen sclerosus",
                                                    "Idiopathic guttate hypomelanosis", "Vitiligoo=vit2"], 0.5)
    got = {c.case_id: c.label for c in sel.cases}
    assert got == {
        "-1000600354148496558": "vitiligo", "1006000000000000003": "vitiligo", "1007000000000000004": "vitiligo",
        "1012000000000000009": "vitiligo",
        "-1002039107727665188": "tinea_versicolor", "1010000000000000007": "tinea_versicolor",
        "1011000000000000008": "tinea_versicolor", "1013000000000000010": "tinea_versicolor",
        "1005000000000000002": "idiopathic_guttate_hypomelanosis",
    }
    assert sel.ambiguous_cases == 1  # Lichen sclerosus 0.5 vs Vitiligo 0.5
    assert sel.missing_conditions == [("Vitiligoo", "Vitiligo")]
    assert sel.unmapped_conditions["Eczema"] == 2
    # A lower threshold admits the 0.3-weight vitiligo case.
    low = scin.select_cases(cases_csv, labels_csv, ["vitiligo"], 0.3)
    assert "1003358831658393077" in {c.case_id for c in low.cases}
    # --max-cases takes cases round-robin over classes.
    few = scin.select_cases(cases_csv, labels_csv, ["vitiligo", "tinea_versicolor"], 0.5, max_cases=3)
    assert Counter(c.label for c in few.cases) == {"tinea_versicolor": 2, "vitiligo": 1}
    with pytest.raises(scin.ScinImportError, match="min-confidence"):
        scin.select_cases(cases_csv, labels_csv, ["vitiligo"], 0.0)
    with pytest.raises(scin.ScinImportError, match="lacks column"):
        scin.select_cases("case_id,foo\n1,2\n", labels_csv)


# ------------------------------------------------------------------ against the fake bucket


def test_import_writes_imagefolder_manifest_and_source(bucket, tmp_path):
    out = tmp_path / "scin"
    report = run_import(bucket, out)

    rows = read_manifest(out)
    assert list(rows[0])[:4] == ["path", "label", "group", "skin_type"]
    assert "monk_skin_tone_us" in rows[0] and "sha256" in rows[0]
    by_path = {r["path"]: r for r in rows}
    # Every listed file exists, lies in its class folder and has the recorded sha256.
    for r in rows:
        f = out / r["path"]
        assert f.parent.name == r["label"]
        assert hashlib.sha256(f.read_bytes()).hexdigest() == r["sha256"]
    assert Counter(r["label"] for r in rows) == {"vitiligo": 3 + 1 + 2 + 2, "tinea_versicolor": 2 + 2 + 3 + 1,
                                                 "idiopathic_guttate_hypomelanosis": 1}
    # Groups are SCIN case ids; skin types are the dermatologist consensus, else self-reported.
    a = [r for r in rows if r["scin_case_id"] == "-1000600354148496558"]
    assert len(a) == 3 and {r["group"] for r in a} == {"-1000600354148496558"}
    assert {(r["skin_type"], r["skin_type_source"], r["monk_skin_tone_us"], r["monk_skin_tone_india"],
             r["fitzpatrick_self_reported"]) for r in a} == {("FST5", "dermatologist", "7", "8", "FST4")}
    b = [r for r in rows if r["scin_case_id"] == "-1002039107727665188"]
    assert {(r["skin_type"], r["skin_type_source"], r["monk_skin_tone_us"]) for r in b} == {
        ("FST2", "self_reported", "")}
    e = [r for r in rows if r["scin_case_id"] == "1005000000000000002"]
    assert [r["skin_type"] for r in e] == ["FST3"]  # FST3 + FST4 -> lower median
    # Cases sharing a byte-identical photo are one group (the smaller case id).
    dup = {r["group"] for r in rows if r["scin_case_id"] in {"1012000000000000009", "1013000000000000010"}}
    assert dup == {"1012000000000000009"}

    # The missing and the corrupt image: a clear error, no file, not in the manifest.
    failures = {(o.case.case_id, o.index): o.error for o in report.failures}
    assert set(failures) == {MISSING, CORRUPT}
    assert "not found (HTTP 404)" in failures[MISSING]
    assert "not a usable image" in failures[CORRUPT]
    for case_id, n in (MISSING, CORRUPT):
        name = scin.image_filename(case_id, n, image_path(case_id, n))
        assert not list(out.rglob(name)) and not any(name in p for p in by_path)
    assert not list(out.rglob("*.part")) and not (out / scin.TMP_DIR_NAME).exists()

    # The transient 500 was retried and the image arrived.
    assert bucket.image_requests().count(image_path(*FLAKY)) == 2
    assert any(r["scin_image_path"] == image_path(*FLAKY) for r in rows)

    source = (out / "SOURCE.md").read_text()
    for needle in ("SCIN Data Use License", "re-identify", "Date (UTC): 20", "`--min-confidence`: 0.5",
                   "| Vitiligo | `vitiligo` | 4 |", "Ward A", "not found (HTTP 404)", "Eczema: 2"):
        assert needle in source, needle


def test_second_run_downloads_nothing_and_repairs_damaged_files(bucket, tmp_path):
    out = tmp_path / "scin"
    first = run_import(bucket, out)
    manifest_after_first = read_manifest(out)
    assert first.count("downloaded") == len(manifest_after_first)
    before = len(bucket.image_requests())

    second = run_import(bucket, out)
    images_asked = bucket.image_requests()[before:]
    # Only the two images that failed the first time are asked for again; none is re-downloaded.
    assert sorted(images_asked) == sorted([image_path(*MISSING), image_path(*CORRUPT)])
    assert second.count("downloaded") == 0 and second.count("skipped") == first.count("downloaded")
    assert read_manifest(out) == manifest_after_first

    # A file replaced by other (valid) bytes fails the sha256 check and is fetched again.
    rows = read_manifest(out)
    victim = out / rows[0]["path"]
    victim.write_bytes(png_bytes(999))
    before = len(bucket.image_requests())
    third = run_import(bucket, out)
    assert third.count("downloaded") == 1
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == rows[0]["sha256"]
    assert len(bucket.image_requests()) - before == 3  # the victim + the two permanent failures


def test_split_from_the_output_never_puts_one_case_in_two_splits(bucket, tmp_path):
    from hypoderm.data.dataset import load_index
    from hypoderm.data.splits import make_split

    out = tmp_path / "scin"
    run_import(bucket, out, conditions=["vitiligo", "tinea_versicolor"])
    index = load_index(out / "manifest.csv")
    assert all(s.group for s in index.samples) and all(s.skin_type for s in index.samples)
    assert "monk_skin_tone_us" in index.samples[0].extra
    split = make_split(index, folds=3, seed=0)
    folds_of_case: dict[str, set[int]] = defaultdict(set)
    for sample, split_sample in zip(index.samples, split.samples, strict=True):
        folds_of_case[sample.extra["scin_case_id"]].add(split_sample.fold)
    # 4 + 4 selected cases (see test_select_cases...) plus the 0.5/0.5 Lichen sclerosus/Vitiligo
    # case, which is plain vitiligo once Lichen sclerosus is not a chosen condition.
    assert len(folds_of_case) == 9
    assert all(len(f) == 1 for f in folds_of_case.values()), folds_of_case
    for fold in range(3):
        train, val, test = split.partition(fold)
        cases = [{index.samples[i].extra["scin_case_id"] for i in part} for part in (train, val, test)]
        assert not (cases[0] & cases[1]) and not (cases[0] & cases[2]) and not (cases[1] & cases[2])


def test_cli_end_to_end(bucket, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli.main(["data", "import", "scin", "--out", str(out), "--base-url", bucket.base_url,
                   "--conditions", "tinea_versicolor,Idiopathic guttate hypomelanosis", "--max-cases", "2",
                   "--no-progress", "--retries", "0"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "selected 2 SCIN cases" in captured.out
    rows = read_manifest(out)
    assert {r["label"] for r in rows} == {"tinea_versicolor", "idiopathic_guttate_hypomelanosis"}
    assert "idiopathic_guttate_hypomelanosis" in captured.out
    assert "1 image(s) could not be fetched" in captured.err  # the 404 of the IGH case


def test_unreachable_metadata_is_a_clear_error(bucket, tmp_path, capsys):
    rc = cli.main(["data", "import", "scin", "--out", str(tmp_path / "x"), "--base-url",
                   bucket.base_url + "/nowhere", "--no-progress", "--retries", "0"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "cannot fetch SCIN metadata" in err and "scin_cases.csv" in err and "HTTP 404" in err
    assert not (tmp_path / "x").exists()

    bucket.close()  # nothing listens on that port any more: a network error, not a traceback
    rc = cli.main(["data", "import", "scin", "--out", str(tmp_path / "y"), "--base-url", bucket.base_url,
                   "--no-progress", "--retries", "1", "--timeout", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot fetch SCIN metadata" in err and "gave up after 2 attempts" in err


def test_bad_arguments_and_empty_selection_are_clear_errors(bucket, tmp_path, capsys):
    """User errors exit 2, as in every command (hypoderm.errors); only a failed download of the metadata exits 1."""
    base = ["data", "import", "scin", "--out", str(tmp_path / "o"), "--base-url", bucket.base_url, "--no-progress"]
    assert cli.main(base + ["--min-confidence", "1.5"]) == 2
    assert "--min-confidence must be in (0, 1]" in capsys.readouterr().err
    assert cli.main(base + ["--workers", "64"]) == 2
    assert "--workers must be 1..16" in capsys.readouterr().err
    assert cli.main(["data", "import", "scin", "--out", str(tmp_path / "o"), "--base-url", "ftp://example.org"]) == 2
    assert "--base-url must be an http:// or https:// URL" in capsys.readouterr().err
    assert cli.main(base + ["--conditions", "Melanoma"]) == 2
    err = capsys.readouterr().err
    assert "no SCIN case has a chosen condition" in err and "Melanoma" in err


def test_changing_filters_on_the_same_folder_warns_about_leftover_files(bucket, tmp_path):
    out = tmp_path / "scin"
    run_import(bucket, out, conditions=["vitiligo", "tinea_versicolor"])
    messages: list[str] = []
    scin.import_scin(out, conditions=["tinea_versicolor"], base_url=bucket.base_url, backoff=0.01,
                     progress=False, log=messages.append)
    assert {r["label"] for r in read_manifest(out)} == {"tinea_versicolor"}
    leftover = [m for m in messages if "not in this manifest" in m]
    assert len(leftover) == 1 and leftover[0].startswith("warning: 9 file(s)")  # the 9 vitiligo images
