"""Compressed, cacheable delivery of the app's files: the page, its static files, the WASM runtime, the model.

A phone's first visit downloads the runtime (14 MB of WASM) and the model; uncompressed that is ~18.6 MB,
about 15 s on a 10 Mbit/s link. Here every compressible file is served brotli- or gzip-encoded, chosen by
the request's Accept-Encoding, and the runtime and the model get content-hashed URLs that may be cached
for a year (`immutable`): a new model or runtime has a new URL, so nothing stale is ever served.

Compression happens once per file content, not per request: the small static files at startup in memory,
the large files (runtime, model) into a cache directory keyed by the file's SHA-256, never into the installed
package (the model may be any user's file). Brotli at quality 11 takes ~26 s for the WASM on one quiet core
(97 s on the loaded VM), so it is done once and reused. `hypoderm serve` makes every variant before it listens
(`Delivery.prepare`), so the first phone gets brotli too: brotli-11 from an earlier run's cache, else a quick
brotli (quality STARTUP_BROTLI_QUALITY, seconds) that a background thread replaces with brotli-11 when done.

Why not a library: ServeStatic/WhiteNoise serve a fixed directory whose precompressed siblings were
written next to the files (at build time, into the package); here the model is chosen at run time and the
runtime lives in node_modules, so this small module does the content negotiation itself.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from hypoderm.cards import TEXT_DIR

CACHE_DIR_ENV = "HYPODERM_CACHE_DIR"
IMMUTABLE = "public, max-age=31536000, immutable"  # one year: content-hashed URLs never change content
REVALIDATE = "no-cache"  # fixed URLs (the page, static files): always revalidated (cheap 304 by ETag)
BROTLI_QUALITY = 11
GZIP_LEVEL = 9
# Encodings we produce, in order of preference when the client accepts several equally.
ENCODINGS = ("br", "gzip")
_SUFFIX = {"br": "br", "gzip": "gz"}
COMPRESSIBLE = {".js", ".mjs", ".css", ".json", ".svg", ".html", ".webmanifest", ".wasm", ".onnx", ".txt", ".md"}
MEDIA_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".json": "application/json",
               ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8",
               ".webmanifest": "application/manifest+json", ".wasm": "application/wasm",
               ".onnx": "application/octet-stream", ".png": "image/png"}
# A compressed variant must save at least this fraction of the bytes to be worth a decode on the phone.
MIN_SAVING = 0.02
# Brotli-11 runs at ~0.5 MB/s: a larger file is brotli-compressed in a background thread while the
# requests that arrive meanwhile get gzip (0.6 s for the 14 MB runtime), so no request waits half a minute.
SYNC_BROTLI_BYTES = 1 << 20
# Brotli made at start-up when no brotli-11 is cached yet: the 14 MB WASM in 1.0 s on the loaded 2-core VM, 2.86 MB
# (brotli-11: 2.30 MB in 97 s; gzip-9: 3.65 MB in 1.6 s); benchmarks/app/README.md "Brotli before the first visitor".
STARTUP_BROTLI_QUALITY = 5


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (the model and runtime are several MB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """$HYPODERM_CACHE_DIR, else $XDG_CACHE_HOME/hypoderm/precompressed, else ~/.cache/hypoderm/precompressed."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hypoderm" / "precompressed"


def parse_accept_encoding(header: str | None) -> list[str]:
    """Our encodings the client accepts, best first (by q-value, then br before gzip); q=0 refuses one."""
    if not header:
        return []
    q: dict[str, float] = {}
    for part in header.split(","):
        token, _, params = part.strip().partition(";")
        token = token.strip().lower()
        if not token:
            continue
        weight = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    weight = float(v)
                except ValueError:
                    weight = 0.0
        q[token] = weight
    star = q.get("*")
    scored = [(q.get(enc, star if star is not None else 0.0), -i, enc) for i, enc in enumerate(ENCODINGS)]
    return [enc for w, _, enc in sorted(scored, reverse=True) if w > 0]


def _compress(data: bytes, encoding: str, quality: int = BROTLI_QUALITY) -> bytes:
    if encoding == "br":
        import brotli

        return brotli.compress(data, quality=quality, lgwin=24)
    return gzip.compress(data, GZIP_LEVEL, mtime=0)


@dataclass
class Asset:
    """One served file: its bytes on disk, its hash, and its compressed variants once made."""

    path: Path
    media_type: str
    sha256: str
    size: int
    compressible: bool
    in_memory: bool  # small static files: variants kept in memory; large ones: in the cache directory
    variants: dict[str, bytes | Path | None] = field(default_factory=dict)  # None: not worth it
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: set[str] = field(default_factory=set)  # encodings being made in a background thread

    @property
    def etag(self) -> str:
        return f'"{self.sha256[:32]}"'


class AssetStore:
    """Compressed variants of the served files, made once per content and reused."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self._fallback: Path | None = None

    def add(self, path: Path, *, in_memory: bool) -> Asset:
        """Register a file (hashing it now); variants are made by `variant` or `warm`."""
        suffix = path.suffix.lower()
        return Asset(path=path, media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"),
                     sha256=sha256_file(path), size=path.stat().st_size, compressible=suffix in COMPRESSIBLE,
                     in_memory=in_memory)

    @property
    def where(self) -> Path:
        """Where the variants are kept: the cache directory, or the temporary one used when it cannot be written."""
        return self._fallback if self._fallback is not None else self.cache_dir

    def _dir(self) -> Path:
        """The cache directory, created; a private temporary one when it cannot be written."""
        if self._fallback is not None:
            return self._fallback
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            probe = self.cache_dir / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            return self.cache_dir
        except OSError:
            self._fallback = Path(tempfile.mkdtemp(prefix="hypoderm-precompressed-"))
            return self._fallback

    def variant(self, asset: Asset, encoding: str) -> bytes | Path | None:
        """The asset compressed with `encoding` (bytes or a cache file), or None when compression does not
        pay (e.g. a PNG, or float weights that barely shrink). Made on first use; the lock is not held while
        compressing, so a slow brotli never holds up a gzip request for the same file."""
        if not asset.compressible:
            return None
        with asset.lock:
            if encoding in asset.variants:
                return asset.variants[encoding]
        result: bytes | Path | None
        if asset.in_memory:
            data = _compress(asset.path.read_bytes(), encoding)
            result = data if len(data) <= asset.size * (1 - MIN_SAVING) else None
        else:
            result = self._cached_file(asset, encoding)
        with asset.lock:
            return asset.variants.setdefault(encoding, result)

    def _cache_path(self, asset: Asset, encoding: str, level: int | None = None) -> Path:
        if level is None:
            level = BROTLI_QUALITY if encoding == "br" else GZIP_LEVEL
        return self._dir() / f"{asset.sha256}.{level}.{_SUFFIX[encoding]}"

    def _cached_file(self, asset: Asset, encoding: str, level: int | None = None) -> Path | None:
        target = self._cache_path(asset, encoding, level)
        if not target.is_file():
            data = _compress(asset.path.read_bytes(), encoding, BROTLI_QUALITY if level is None else level)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)  # atomic: a concurrent server never reads half a file
        return target if target.stat().st_size <= asset.size * (1 - MIN_SAVING) else None

    def _claim(self, asset: Asset, encoding: str) -> bool:
        """True when the caller should make this variant: not made yet and nobody else making it."""
        with asset.lock:
            if encoding in asset.variants or encoding in asset.pending:
                return False
            asset.pending.add(encoding)
            return True

    def _make_claimed(self, asset: Asset, encoding: str) -> None:
        try:
            self.variant(asset, encoding)
        finally:
            with asset.lock:
                asset.pending.discard(encoding)

    def ready_variant(self, asset: Asset, encoding: str) -> bytes | Path | None:
        """Like `variant`, but a large file's brotli is made in a background thread and None is returned
        until it is done (the caller falls back to gzip): compression never holds a request for long."""
        if encoding == "gzip" or asset.size <= SYNC_BROTLI_BYTES or asset.in_memory or not asset.compressible:
            return self.variant(asset, encoding)
        with asset.lock:
            if encoding in asset.variants:
                return asset.variants[encoding]
        if self._cache_path(asset, encoding).is_file():  # made by an earlier run: cheap to pick up
            return self.variant(asset, encoding)
        if self._claim(asset, encoding):
            threading.Thread(target=self._make_claimed, args=(asset, encoding), daemon=True,
                             name=f"hypoderm-{encoding}-{asset.path.name}").start()
        return None

    def warm(self, assets: list[Asset]) -> None:
        """Make every variant now (gzip first: it is quick and every browser accepts it)."""
        for a in assets:
            self.variant(a, "gzip")
        for a in assets:
            if self._claim(a, "br"):
                self._make_claimed(a, "br")

    def prepare(self, assets: list[Asset]) -> list[Asset]:
        """Before serving: gzip and brotli of every asset ready, so no request waits and none gets gzip for
        want of brotli. Brotli-11 comes from the cache (an earlier run) or, for a small file, is made now; a
        large file without it gets a quick brotli now (STARTUP_BROTLI_QUALITY). Returns the assets that still
        want their brotli-11 (`upgrade` makes it)."""
        later = []
        for a in assets:
            self.variant(a, "gzip")
            if not a.compressible or a.in_memory or a.size <= SYNC_BROTLI_BYTES or self._cache_path(a, "br").is_file():
                self.variant(a, "br")
                continue
            quick = self._cached_file(a, "br", STARTUP_BROTLI_QUALITY)
            with a.lock:
                a.variants.setdefault("br", quick)
                a.pending.add("br")  # ready_variant does not start a second brotli-11 of it
            later.append(a)
        return later

    def upgrade(self, assets: list[Asset]) -> None:
        """Replace the quick brotli of `assets` (from `prepare`) by brotli-11, one file at a time."""
        for a in assets:
            try:
                best = self._cached_file(a, "br")
            finally:
                with a.lock:
                    a.pending.discard("br")
            if best is not None:
                with a.lock:
                    a.variants["br"] = best

    def response(self, asset: Asset, request: Request, cache_control: str, *,
                 extra_headers: dict[str, str] | None = None) -> Response:
        """The asset as the client accepts it: 304 for a matching If-None-Match, else the best encoding."""
        headers = {"Cache-Control": cache_control, "Vary": "Accept-Encoding", **(extra_headers or {})}
        inm = request.headers.get("if-none-match")
        if inm is not None:
            # Any variant's ETag ("<hash>" or "<hash>-br") names the same content.
            tags = {t.strip().removeprefix("W/").strip('"').split("-")[0] for t in inm.split(",")}
            if "*" in tags or asset.sha256[:32] in tags:
                return Response(status_code=304, headers={**headers, "ETag": asset.etag})
        if asset.compressible:
            for encoding in parse_accept_encoding(request.headers.get("accept-encoding")):
                body = self.ready_variant(asset, encoding)
                if body is None:
                    continue
                # The ETag differs per encoding and level (a strong validator names exact bytes).
                level = body.name.split(".")[-2] if isinstance(body, Path) else ""
                h = {**headers, "Content-Encoding": encoding, "ETag": asset.etag[:-1] + f'-{encoding}{level}"'}
                if isinstance(body, Path):
                    return FileResponse(body, media_type=asset.media_type, headers=h)
                return Response(body, media_type=asset.media_type, headers=h)
        return FileResponse(asset.path, media_type=asset.media_type, headers={**headers, "ETag": asset.etag})


@dataclass
class Delivery:
    """What one app serves: the page's static files (fixed URLs, revalidated), the runtime and the model
    (content-hashed URLs, immutable)."""

    store: AssetStore
    model: Asset
    static: dict[str, Asset]  # path under /static/ -> asset
    ort: dict[str, Asset]  # runtime file name -> asset
    ort_hash: str  # one hash over all runtime files: the ESM loader finds the others next to itself

    @classmethod
    def build(cls, model_path: Path, static_dir: Path, web_assets: Path | None, ort_files: tuple[str, ...],
              cache_dir: Path | None = None) -> Delivery:
        store = AssetStore(cache_dir)
        static = {p.relative_to(static_dir).as_posix(): store.add(p, in_memory=True)
                  for p in sorted(static_dir.rglob("*")) if p.is_file() and p.name != "sw.js"}
        static |= {f"data/{p.name}": store.add(p, in_memory=True) for p in sorted(TEXT_DIR.glob("*.json"))}  # texts
        ort = {name: store.add(web_assets / name, in_memory=False) for name in ort_files} if web_assets else {}
        combined = hashlib.sha256("".join(f"{n}:{a.sha256};" for n, a in ort.items()).encode()).hexdigest()
        return cls(store=store, model=store.add(model_path, in_memory=False), static=static, ort=ort,
                   ort_hash=combined[:16])

    @property
    def model_url(self) -> str:
        """Changes whenever the model's bytes change, so it can be cached forever."""
        return f"/model/{self.model.sha256[:16]}/model.onnx"

    @property
    def ort_base(self) -> str | None:
        return f"/vendor/ort/{self.ort_hash}/" if self.ort else None

    def large(self) -> list[Asset]:
        return [*self.ort.values(), self.model]

    def warm_in_background(self) -> threading.Thread:
        """Precompress the runtime and the model in a daemon thread, so the first phone does not wait."""
        th = threading.Thread(target=self.store.warm, args=(self.large(),), name="hypoderm-precompress", daemon=True)
        th.start()
        return th

    def prepare(self) -> threading.Thread | None:
        """What `hypoderm serve` runs before it listens: every compressed variant of the runtime and the model
        ready (AssetStore.prepare), then brotli-11 where it is still missing in a daemon thread (returned)."""
        later = self.store.prepare(self.large())
        if not later:
            return None
        th = threading.Thread(target=self.store.upgrade, args=(later,), name="hypoderm-brotli-11", daemon=True)
        th.start()
        return th
