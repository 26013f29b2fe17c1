"""Write the photos of one fold of a split file as a `path,label` CSV manifest (absolute paths), e.g. the
validation fold of a --final run for `hypoderm export --eval`:

    .venv/bin/python scripts/fold_manifest.py MANIFEST SPLIT_JSON FOLD OUT_CSV
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    data, split_path, fold, out = Path(argv[0]), Path(argv[1]), int(argv[2]), Path(argv[3])
    split = json.loads(split_path.read_text())
    chosen = {s["path"] for s in split["samples"] if s["fold"] == fold}
    with open(data, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.DictReader(f) if r["path"] in chosen]
    with open(out, "w", newline="") as g:
        w = csv.DictWriter(g, fieldnames=["path", "label"])
        w.writeheader()
        w.writerows({"path": str((data.parent / r["path"]).resolve()), "label": r["label"]} for r in rows)
    print(f"fold {fold}: {len(rows)} photos -> {out}")
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
