"""What only `hypoderm predict` can be handed (hypoderm_testkit.fuzz has the rest): folder entries that are not
plain image files (`make_special`, FuzzCase.special) and malformed model sidecars (`sidecar_cases`)."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

# ------------------------------------------------------------------------------------ folder entries (CLI)
SPECIALS = ("fifo", "broken_link", "loop_link", "folder_link", "device_link", "sparse_video", "sparse_blob")


def make_special(path: Path, special: str) -> None:
    """Make `path` a folder entry that is not a plain image file (FuzzCase.special)."""
    if special == "fifo":
        os.mkfifo(path)
    elif special == "broken_link":
        path.symlink_to(path.with_name(path.name + ".gone"))
    elif special == "loop_link":
        path.symlink_to(path)
    elif special == "folder_link":
        path.symlink_to(path.parent)
    elif special == "device_link":
        path.symlink_to("/dev/zero")
    else:  # a sparse 3 GiB file: a video, or bytes that look like nothing (no disk space used)
        with open(path, "wb") as f:
            f.write(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" if special == "sparse_video"
                    else b"\x01" * 64)
            f.truncate(3 << 30)


# ------------------------------------------------------------------------------------ model sidecars
_HOSTILE_VALUES: list[object] = [float("nan"), float("inf"), float("-inf"), -1, 0, 1e-320, 1e308, 2**63, "abc", "",
                                 None, True, False, [], {}, [1, 2], "0.5", 0.5, 2.0, 64, 100_000, 1e6, ["a"],
                                 ["x", "x"], "x" * 10_000, {"name": 5}, [float("nan")] * 3, [0, 0, 0], [0.5, 0.5, 0.5]]
_SIDECAR_FIELDS = ["temperature", "abstain_threshold", "class_names", "input", "input.size", "input.resize_size",
                   "input.mean", "input.std", "input.name", "input.interpolation", "input.layout", "output",
                   "output.name", "precision", "ood", "ood.skin_fraction_min", "ood.max_logit_min", "ood.gate",
                   "ood.gate.threshold", "ood.gate.size", "gradcam", "gradcam.features", "format", "metrics",
                   "training_data", "model_name", "quality"]


def sidecar_cases(base: dict, n: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """`n` (description, model.json bytes) mutations of the metadata `base`: hostile values in the fields the run
    time uses, fields removed, class lists of the wrong length, broken JSON text, and harmless edits."""
    rng = random.Random(seed)
    for _ in range(n):
        md = json.loads(json.dumps(base))
        kind = rng.random()
        if kind < 0.05:
            text = json.dumps(md).encode()
            yield "truncated json", text[: rng.randrange(len(text))]
            continue
        if kind < 0.08:
            yield "not an object", json.dumps(rng.choice([[1, 2], "model", 3.5, None])).encode()
            continue
        if kind < 0.12:
            yield "bytes", rng.randbytes(rng.randint(1, 200))
            continue
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            field = rng.choice(_SIDECAR_FIELDS)
            *parents, leaf = field.split(".")
            node = md
            for parent in parents:
                node = node.get(parent) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                continue
            if rng.random() < 0.15:
                node.pop(leaf, None)
                desc = f"{field} removed"
            elif field == "class_names" and rng.random() < 0.5:
                names = list(base["class_names"])
                node[leaf] = rng.choice([names[:1], names + ["extra"], names + names[:1], names[::-1], []])
                desc = f"class_names {node[leaf]!r}"
            else:
                node[leaf] = rng.choice(_HOSTILE_VALUES)
                desc = f"{field} = {str(node[leaf])[:40]}"
            yield desc, json.dumps(md).encode()  # Python writes NaN / Infinity tokens, as a careless edit might
            break
        else:
            yield "unchanged", json.dumps(md).encode()
