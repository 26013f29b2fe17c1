"""Fetching from the SCIN bucket: HTTP with retries and size limits, and one image downloaded,
verified to decode and written atomically (resuming when a good copy is already there).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath

from hypoderm import __version__
from hypoderm.data.scin.selection import ScinCase
from hypoderm.errors import HypodermError

DEFAULT_BASE_URL = "https://storage.googleapis.com/dx-scin-public-data"

REPO_URL = "https://github.com/google-research-datasets/scin"

MAX_IMAGE_BYTES = 50 * 1024 * 1024  # SCIN photos are a few MB at most; refuse anything absurd

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

USER_AGENT = f"hypoderm/{__version__} (SCIN importer; +{REPO_URL})"

TMP_DIR_NAME = ".scin-tmp"


class DownloadError(HypodermError, RuntimeError):
    """One URL could not be fetched; `str(e)` says why (HTTP status, network error, attempts)."""


@dataclass
class ImageOutcome:
    """Result of fetching one image."""

    case: ScinCase
    index: int
    source_path: str
    dest: Path
    status: str  # "downloaded" | "skipped" | "failed"
    sha256: str | None = None
    error: str | None = None


def fetch_bytes(
    url: str,
    *,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 1.0,
    max_bytes: int = MAX_IMAGE_BYTES,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """GET `url` with up to `retries` retries on 5xx/429/timeouts/connection errors.

    Waits `backoff * 2**attempt` seconds (plus up to 25 % jitter, so parallel workers do not retry
    in lock-step) between attempts. 4xx other than 408/425/429 fail at once: a missing file stays
    missing. Raises DownloadError with the reason.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1) * (1 + random.random() / 4))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > max_bytes:
                    raise DownloadError(f"{url}: file too large ({int(length)} bytes > limit {max_bytes})")
                data = response.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise DownloadError(f"{url}: file too large (> limit {max_bytes} bytes)")
                if length is not None and length.isdigit() and len(data) != int(length):
                    # A connection cut mid-body; urllib does not always notice on its own.
                    last_error = f"truncated response ({len(data)} of {length} bytes)"
                    continue
                return data
        except urllib.error.HTTPError as e:
            if e.code not in RETRYABLE_STATUS:
                reason = "not found" if e.code == 404 else (e.reason or "HTTP error")
                raise DownloadError(f"{url}: {reason} (HTTP {e.code})") from None
            last_error = f"HTTP {e.code} {e.reason or ''}".strip()
        except urllib.error.URLError as e:
            last_error = f"network error: {e.reason}"
        except (TimeoutError, ConnectionError, HTTPException, OSError) as e:
            last_error = f"network error: {type(e).__name__}: {e}"
    raise DownloadError(f"{url}: {last_error}, gave up after {retries + 1} attempts")


def bucket_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def _check_image_bytes(data: bytes) -> None:
    """Raise ValueError with a specific reason when `data` is not a fully decodable image."""
    from hypoderm.imaging.io import ImageLoadError, load_rgb_bytes

    try:
        load_rgb_bytes(data)
    except ImageLoadError as e:
        raise ValueError(str(e)) from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_filename(case_id: str, index: int, source_path: str) -> str:
    """`scin<case_id>_<n><ext>`: case ids can start with '-', which a prefix keeps off CLI flags."""
    suffix = PurePosixPath(source_path).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = ".png"
    safe_id = re.sub(r"[^0-9A-Za-z_-]", "_", case_id)
    return f"scin{safe_id}_{index}{suffix}"


def fetch_image(
    case: ScinCase,
    index: int,
    source_path: str,
    out: Path,
    base_url: str,
    known_sha256: dict[str, str],
    **http: float,
) -> ImageOutcome:
    """Download one image to `out/<label>/`, or skip it when it is already there and valid.

    The bytes are checked (sha256 against the previous manifest when it has one, else a full
    decode) before anything is written; the file is written to a temporary name under
    `out/.scin-tmp/` and renamed, so an interrupted or failed download never leaves a partial image
    in a class folder.
    """
    dest = out / case.label / image_filename(case.case_id, index, source_path)
    rel = dest.relative_to(out).as_posix()
    outcome = ImageOutcome(case=case, index=index, source_path=source_path, dest=dest, status="failed")
    if dest.is_file():
        data = dest.read_bytes()
        sha = sha256_hex(data)
        expected = known_sha256.get(rel)
        if expected is not None:
            valid = sha == expected
        else:
            try:
                _check_image_bytes(data)
                valid = True
            except ValueError:
                valid = False
        if valid:
            outcome.status, outcome.sha256 = "skipped", sha
            return outcome
    try:
        data = fetch_bytes(bucket_url(base_url, source_path), **http)  # type: ignore[arg-type]
    except DownloadError as e:
        outcome.error = str(e)
        return outcome
    try:
        _check_image_bytes(data)
    except ValueError as e:
        outcome.error = f"{bucket_url(base_url, source_path)}: not a usable image ({e})"
        return outcome
    tmp_dir = out / TMP_DIR_NAME
    tmp_dir.mkdir(parents=True, exist_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{dest.name}.{os.getpid()}.{threading.get_ident()}.part"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    outcome.status, outcome.sha256 = "downloaded", sha256_hex(data)
    return outcome
