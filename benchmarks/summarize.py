"""One summary file per benchmark run instead of one file per fold, model and log (issue 30).

`hypoderm cv` and `hypoderm compare` write a folder per run (cv_config.json, fold*/metrics.json, summary.json,
summary.md, pooled_test_predictions.npz, logs, ...). `pack` folds such a folder into two files beside it:

    DIR.json  {path inside DIR: content}: a .json file's parsed JSON (every value unchanged), any other
              text file (.md, .txt, .log, .csv) its text
    DIR.npz   the arrays of every .npz file, under "PATH/ARRAY" (only when DIR holds .npz files)

and deletes the files it packed (what git ignores there, checkpoints and per-epoch logs, stays).
`unpack` writes the folder back (JSON re-indented), so a run can resume (`hypoderm cv` skips the folds whose
metrics.json exists) and pack again; `read` and `arrays` read either form.

    python benchmarks/summarize.py pack benchmarks/comparison/h200_224/models
    python benchmarks/summarize.py unpack benchmarks/comparison/h200_224/models
    python benchmarks/summarize.py pack benchmarks/origins/runs --under crop-tone   # one run of several
    (pack --no-arrays: leave the .npz files out, and on disk)
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

TEXT = {".json", ".md", ".txt", ".log", ".csv"}
# run artefacts git ignores in benchmarks/ (.gitignore): never packed, left where they are
SKIP = ("*.pt", "*.jsonl", "*.tmp", "fold*/*.png", "fold*/test_predictions.npz", "fold*/report.md")


def _json_path(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.json"


def _npz_path(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.npz"


def _packable(rel: str, arrays: bool) -> bool:
    if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel.rsplit("/", 1)[-1], p) for p in SKIP if "/" not in p):
        return False
    if any(fnmatch.fnmatch("/".join(rel.split("/")[-2:]), p) for p in SKIP if "/" in p):
        return False
    suffix = Path(rel).suffix
    return suffix in TEXT or (arrays and suffix == ".npz")


def _within(rel: str, under: str | None) -> bool:
    return under is None or rel == under or rel.startswith(under.rstrip("/") + "/")


def _files(folder: Path, arrays: bool, under: str | None = None) -> list[str]:
    if not folder.is_dir():
        return []
    rels = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(r for r in rels if _packable(r, arrays) and _within(r, under))


def _load_packed(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    texts = json.loads(_json_path(folder).read_text()) if _json_path(folder).is_file() else {}
    arrs: dict[str, np.ndarray] = {}
    if _npz_path(folder).is_file():
        with np.load(_npz_path(folder)) as z:
            arrs = {k: z[k] for k in z.files}
    return texts, arrs


def pack(folder: Path, arrays: bool = True, under: str | None = None) -> list[str]:
    """Fold FOLDER's files into FOLDER.json (+ FOLDER.npz), merged with what an earlier pack wrote (a file
    on disk replaces its packed version); deletes the packed files and the folders left empty. With
    `arrays=False` the .npz files stay out (and on disk); with `under` (a path inside FOLDER: one run of
    several) only the files there are packed, so runs going on beside it are left alone. Returns the paths
    packed from disk."""
    texts, arrs = _load_packed(folder)
    rels = _files(folder, arrays, under)
    for rel in rels:
        path = folder / rel
        if path.suffix == ".npz":
            arrs = {k: v for k, v in arrs.items() if not k.startswith(rel + "/")}
            with np.load(path) as z:
                arrs.update({f"{rel}/{k}": z[k] for k in z.files})
        elif path.suffix == ".json":
            texts[rel] = json.loads(path.read_text(encoding="utf-8"))
        else:
            texts[rel] = path.read_text(encoding="utf-8")
    if not rels:
        return []
    _json_path(folder).write_text(json.dumps(dict(sorted(texts.items())), indent=1) + "\n", encoding="utf-8")
    if arrs:
        buf = io.BytesIO()
        np.savez(buf, **dict(sorted(arrs.items())))
        _npz_path(folder).write_bytes(buf.getvalue())
    for rel in rels:
        (folder / rel).unlink()
    base = folder / under if under else folder
    for d in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [base, folder]:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return rels


def unpack(folder: Path, under: str | None = None) -> list[str]:
    """Write FOLDER's packed files (those within `under` when given) back into it (files already on disk are
    kept); returns the paths written. The packed files stay: the next `pack` merges into them."""
    texts, arrs = _load_packed(folder)
    written = []
    for rel, content in texts.items():
        path = folder / rel
        if path.exists() or not _within(rel, under):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".json"):
            path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        else:
            path.write_text(content, encoding="utf-8")
        written.append(rel)
    by_file: dict[str, dict[str, np.ndarray]] = {}
    for key, a in arrs.items():
        rel, name = key.rsplit("/", 1)
        by_file.setdefault(rel, {})[name] = a
    for rel, named in by_file.items():
        path = folder / rel
        if path.exists() or not _within(rel, under):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **named)  # type: ignore[arg-type]
        written.append(rel)
    return sorted(written)


def read(folder: Path) -> dict[str, Any]:
    """FOLDER's text files, packed or on disk (disk wins): {path inside FOLDER: parsed JSON or text}."""
    texts, _ = _load_packed(folder)
    for rel in _files(folder, arrays=False):
        path = folder / rel
        texts[rel] = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else path.read_text(
            encoding="utf-8")
    return texts


def arrays(folder: Path, rel: str) -> dict[str, np.ndarray]:
    """The arrays of FOLDER/REL (an .npz file), on disk or packed in FOLDER.npz; {} when neither has it."""
    path = folder / rel
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    _, arrs = _load_packed(folder)
    return {k[len(rel) + 1:]: v for k, v in arrs.items() if k.startswith(rel + "/")}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("pack", "unpack"))
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--under", default=None, help="only this path inside each folder (one run of several)")
    ap.add_argument("--no-arrays", action="store_true", help="pack: leave the .npz files out, and on disk")
    args = ap.parse_args(argv)
    for folder in args.folders:
        folder = folder.with_name(folder.name.removesuffix(".json"))
        done = (pack(folder, not args.no_arrays, args.under) if args.action == "pack"
                else unpack(folder, args.under))
        print(f"{args.action} {folder}{'/' + args.under if args.under else ''}: {len(done)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
