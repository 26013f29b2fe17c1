"""File fingerprints for duplicate detection: sha256 of the bytes and perceptual hashes
(`imagehash.phash`) of the image under the 8 flips/90° rotations, cached per file.

Both the split (near-duplicate groups) and the audit need them, so one decode per file serves both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hypoderm.imaging.io import ImageLoadError, load_rgb_bytes

# The 8 symmetries of the square: identity, 3 rotations, and the 4 mirrored versions.
_DIHEDRAL: tuple[tuple[Image.Transpose, ...], ...] = (
    (), (Image.Transpose.ROTATE_90,), (Image.Transpose.ROTATE_180,), (Image.Transpose.ROTATE_270,),
    (Image.Transpose.FLIP_LEFT_RIGHT,), (Image.Transpose.FLIP_TOP_BOTTOM,),
    (Image.Transpose.TRANSPOSE,), (Image.Transpose.TRANSVERSE,),
)
_HASH_SIDE = 32  # phash's internal size (hash_size 8 * highfreq_factor 4)


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    size_bytes: int
    width: int = 0
    height: int = 0
    # phash (64 bits as uint64) of the image under each of the 8 symmetries; empty if unreadable.
    phashes: tuple[int, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


_cache: dict[tuple[str, int, int], Fingerprint] = {}


def _phash_int(img: Image.Image) -> int:
    import imagehash  # here, not above: `data audit/split --help` runs without the training extras

    bits = imagehash.phash(img).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def fingerprint(path: Path) -> Fingerprint:
    """sha256, size and the 8 dihedral phashes of one file, cached by (path, size, mtime)."""
    try:
        st = path.stat()
    except OSError as e:
        return Fingerprint(sha256="", size_bytes=0, error=f"cannot read file ({e.strerror or e})")
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    try:
        data = path.read_bytes()
    except OSError as e:
        return Fingerprint(sha256="", size_bytes=st.st_size, error=f"cannot read file ({e.strerror or e})")
    digest = hashlib.sha256(data).hexdigest()
    try:
        img = load_rgb_bytes(data)
    except ImageLoadError as e:
        fp = Fingerprint(sha256=digest, size_bytes=len(data), error=str(e))
    else:
        # Shrink once to phash's working size; flips/rotations of the small square are then exact
        # and 8 hashes cost little more than one.
        small = img.convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.LANCZOS)
        hashes = []
        for ops in _DIHEDRAL:
            t = small
            for op in ops:
                t = t.transpose(op)
            hashes.append(_phash_int(t))
        fp = Fingerprint(sha256=digest, size_bytes=len(data), width=img.width, height=img.height,
                         phashes=tuple(hashes))
    _cache[key] = fp
    return fp


def near_pairs(fingerprints: list[Fingerprint], threshold: int = 4) -> list[tuple[int, int, int]]:
    """All pairs (i, j, distance), i < j, of readable images whose phash Hamming distance is at most
    `threshold` under some flip/rotation of the second one."""
    ids = [i for i, fp in enumerate(fingerprints) if fp.ok]
    if len(ids) < 2:
        return []
    base = np.array([fingerprints[i].phashes[0] for i in ids], dtype=np.uint64)
    variants = np.array([fingerprints[i].phashes for i in ids], dtype=np.uint64)  # (n, 8)
    # Transforming j or transforming i can give slightly different distances; keep the smaller.
    best: dict[tuple[int, int], int] = {}
    chunk = 256  # bounds memory to chunk * n * 8 uint64 for large datasets
    for start in range(0, len(ids), chunk):
        a = base[start:start + chunk, None, None]  # (c, 1, 1)
        dist = np.bitwise_count(a ^ variants[None, :, :]).min(axis=2)  # (c, n)
        rows, cols = np.nonzero(dist <= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i, j = start + r, c
            if i == j:
                continue
            key = (min(ids[i], ids[j]), max(ids[i], ids[j]))
            best[key] = min(best.get(key, 64), int(dist[r, c]))
    return sorted((i, j, d) for (i, j), d in best.items())

