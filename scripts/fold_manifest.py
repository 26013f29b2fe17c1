"""Write the photos of one fold of a split file as a `path,label` CSV manifest (absolute paths), e.g. the
validation fold of a --final run for `hypoderm export --eval`:

    .venv/bin/python scripts/fold_manifest.py MANIFEST SPLIT_JSON FOLD OUT_CSV
"""

from __future__ import annotations

import csv
import sys

from hypoderm.data.dataset import load_index
from hypoderm.data.splits import Split


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    data, split_path, fold, out = argv[0], argv[1], int(argv[2]), argv[3]
    index = load_index(data)
    chosen = {s.path for s in Split.load(split_path).samples if s.fold == fold}
    rows = [s for s in index.samples if index.relpath(s) in chosen]
    with open(out, "w", newline="") as g:
        w = csv.DictWriter(g, fieldnames=["path", "label"])
        w.writeheader()
        w.writerows({"path": str(s.path.resolve()), "label": s.label} for s in rows)
    print(f"fold {fold}: {len(rows)} photos -> {out}")
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
