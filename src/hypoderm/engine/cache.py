"""Decoded, resized image cache, so CPU training is not bound by JPEG decoding.

Each photo is decoded once into `hypoderm.inference.preprocess.resized_uint8(img, spec)` (RGB, shorter side =
`spec.resize_size`, HWC uint8) and kept as a CHW uint8 tensor. Training crops and augments that
tensor; evaluation takes its centre square resized to the model's size, which is exactly
`hypoderm.inference.preprocess.preprocess`. Photos are decoded like `predict` and `serve` decode them
(`min_size=decode_min_size(spec)`: a large photo is reduced on the way), so evaluation sees their pixels.

With `cache_dir` the arrays are also stored on disk as `.npy`, keyed by the file's path, size,
modification time and `resize_size`, so later runs (other folds, other models) skip decoding.
One cache passed to every fold of `hypoderm cv` and every model of `hypoderm compare` decodes each
photo once per process; `stats_line()` says how often it did (the run's log shows it).
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
    """Decoded images at the training resize, in memory and optionally on disk.

    `style_features=True` also measures each photo's trivial style features (`hypoderm.data.shortcut`: size,
    colours, sharpness, file bytes, EXIF) from the same full-size decode, into `features` (by path), so that
    `hypoderm cv`'s photo-style baseline does not decode every photo a second time."""

    def __init__(self, spec: PreprocessSpec, cache_dir: str | os.PathLike | None = None, *,
                 style_features: bool = False) -> None:
        self.spec = spec
        self.style_features = style_features
        self.features: dict[Path, dict[str, float]] = {}
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._memory: dict[Path, torch.Tensor] = {}
        self.decoded = 0  # images decoded from their files (cache misses), for tests and logs
        self.disk_hits = 0  # images read back from cache_dir's .npy files
        self.memory_hits = 0  # requests answered from memory

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

    def _decode(self, path: Path) -> np.ndarray:
        if not self.style_features:
            return decode_resized(path, self.spec)
        from hypoderm.data.shortcut.features import has_exif, photo_features
        from hypoderm.imaging import io

        data = io.read_image_file(path)
        img = io.load_rgb_bytes(data)
        self.features[path] = photo_features(img, file_bytes=len(data), exif=has_exif(data))
        return resized_uint8(img, self.spec)

    def get(self, path: str | os.PathLike) -> torch.Tensor:
        """CHW uint8 tensor of one photo."""
        path = Path(path)
        hit = self._memory.get(path)
        if hit is not None:
            self.memory_hits += 1
            return hit
        arr = self._from_disk(path)
        if arr is not None:
            self.disk_hits += 1
        else:
            arr = self._decode(path)
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

    def stats_line(self) -> str:
        """'decoded 60 photos once (cache: 60 misses, 240 hits; 3.1 MB in memory)': how often photos were
        decoded from their files against how often a decoded copy was reused."""
        held = len(self._memory)
        if self.decoded == held:
            what = f"decoded {held} photos once"
        else:  # some came from the disk cache (or the memory copy was dropped): say both numbers
            what = f"decoded {self.decoded} of {held} photos from their files"
        disk = f", {self.disk_hits} from {self.cache_dir}" if self.disk_hits else ""
        return (f"{what} (cache: {self.decoded} misses, {self.memory_hits + self.disk_hits} hits{disk}; "
                f"{self.nbytes() / 1e6:.1f} MB in memory)")
