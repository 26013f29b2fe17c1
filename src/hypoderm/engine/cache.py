"""Decoded, resized image cache, so CPU training is not bound by JPEG decoding.

Each photo is decoded once into `hypoderm.inference.preprocess.resized_uint8(img, spec)` (RGB, shorter side =
`spec.resize_size`, HWC uint8) and kept as a CHW uint8 tensor. Training crops and augments that
tensor; evaluation takes its centre square resized to the model's size, which is exactly
`hypoderm.inference.preprocess.preprocess`. Photos are decoded like `predict` and `serve` decode them
(`min_size=decode_min_size(spec)`: a large photo is reduced on the way), so evaluation sees their pixels.

With `cache_dir` the arrays are also stored on disk as `.npy`, keyed by the file's path, size,
modification time and `resize_size`, so later runs (other folds, other models) skip decoding.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hypoderm.inference.preprocess import PreprocessSpec, decode_min_size, resized_uint8


def _key(path: Path, resize_size: int) -> str:
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{resize_size}|v2"
    return hashlib.sha1(raw.encode()).hexdigest()


def decode_resized(path: str | os.PathLike, spec: PreprocessSpec) -> np.ndarray:
    """Decode one photo (robust loader: EXIF, modes, size limit) to the cached HWC uint8 form."""
    from hypoderm.imaging.io import load_rgb

    return resized_uint8(load_rgb(Path(path), min_size=decode_min_size(spec)), spec)


class DecodedCache:
    """Decoded images at the training resize, in memory and optionally on disk."""

    def __init__(self, spec: PreprocessSpec, cache_dir: str | os.PathLike | None = None) -> None:
        self.spec = spec
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._memory: dict[Path, torch.Tensor] = {}
        self.decoded = 0  # images decoded from their files (not from a cache), for tests and logs

    def _from_disk(self, path: Path) -> np.ndarray | None:
        if not self.cache_dir:
            return None
        f = self.cache_dir / f"{_key(path, self.spec.resize_size)}.npy"
        if not f.is_file():
            return None
        try:
            return np.load(f)
        except (OSError, ValueError):  # a damaged cache entry is rebuilt, never trusted
            return None

    def _to_disk(self, path: Path, arr: np.ndarray) -> None:
        if not self.cache_dir:
            return
        f = self.cache_dir / f"{_key(path, self.spec.resize_size)}.npy"
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr)
        os.replace(tmp, f)  # atomic: concurrent DDP ranks or folds never see half a file

    def get(self, path: str | os.PathLike) -> torch.Tensor:
        """CHW uint8 tensor of one photo."""
        path = Path(path)
        hit = self._memory.get(path)
        if hit is not None:
            return hit
        arr = self._from_disk(path)
        if arr is None:
            arr = decode_resized(path, self.spec)
            self.decoded += 1
            self._to_disk(path, arr)
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        self._memory[path] = t
        return t

    def load_all(self, paths: Sequence[str | os.PathLike], progress: bool = False) -> list[torch.Tensor]:
        """Decode (or fetch) every path once; returns CHW uint8 tensors in the same order."""
        it = paths
        if progress:
            from hypoderm.progress import progress_bar

            it = progress_bar(paths, desc="decoding", unit="img")
        return [self.get(p) for p in it]

    def nbytes(self) -> int:
        return sum(t.numel() for t in self._memory.values())
