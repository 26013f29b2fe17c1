"""A seeded generator of hostile inputs for `hypoderm serve` and `hypoderm predict`.

`fuzz_cases(n, seed)` yields `n` FuzzCase objects, the same ones for the same seed: valid and
exotic images in every supported format, and the ways they go wrong (truncated, bit-flipped,
huge declared dimensions, absurd aspect ratios, decompression bombs, zero bytes, random bytes,
documents, polyglots), real large lossless images (PNG, TIFF, WebP up to 41 MP: issue 23), float
and 16-bit images (NaN, infinities, negative and huge values), plus malformed multipart bodies for
the API and, for the CLI (`specials=True`), folder entries that are not files (FIFOs, broken and
looping symbolic links, links to folders and devices, a sparse 3 GiB "video": hypoderm_testkit.fuzz_cli,
which also has `sidecar_cases(n, seed)`, malformed model sidecars (model.json)). Used by the fast fuzz tests
(tests/test_fuzz.py, ~200 cases) and the full runs (benchmarks/robustness/, >= 10,000 cases).
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from hypoderm_testkit.fuzz_cli import SPECIALS

FORMATS = ("PNG", "JPEG", "GIF", "TIFF", "WEBP", "BMP")


@dataclass(frozen=True)
class FuzzCase:
    """One hostile input. `data` is the file / uploaded photo; for the API, `body` and `content_type`
    (when set) replace the normal multipart upload of `data` with a raw, possibly broken, request body."""

    kind: str
    data: bytes
    body: bytes | None = None
    content_type: str | None = None
    special: str | None = None  # CLI only: make this folder entry with `make_special` instead of writing `data`

    @property
    def api_only(self) -> bool:
        return self.body is not None


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(rng: random.Random, w: int, h: int) -> Image.Image:
    """A skin-toned picture with texture (so the compressed data is not trivially small)."""
    nrng = np.random.default_rng(rng.randrange(2**32))
    tone = np.array([rng.randint(100, 240), rng.randint(70, 190), rng.randint(50, 160)], np.float32)
    arr = tone + nrng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _valid(rng: random.Random, fmt: str | None = None) -> bytes:
    fmt = fmt or rng.choice(FORMATS)
    img = _photo(rng, rng.randint(8, 160), rng.randint(8, 160))
    mode = rng.choice(["RGB", "RGB", "L", "RGBA", "P", "1", "CMYK", "LA", "I;16"])
    if mode == "CMYK" and fmt not in ("JPEG", "TIFF"):
        mode = "RGB"
    if mode in ("LA", "RGBA") and fmt in ("JPEG", "BMP"):
        mode = "RGB"
    if mode == "I;16" and fmt not in ("PNG", "TIFF"):
        mode = "L"
    img = img.convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray((np.asarray(img, np.uint16) * 257).astype(np.uint16))
    kw: dict[str, object] = {}
    if fmt == "JPEG":
        kw = {"quality": rng.randint(5, 100), "progressive": rng.random() < 0.3}
    elif fmt == "PNG":
        kw = {"optimize": False, "interlace": rng.random() < 0.2} if rng.random() < 0.5 else {}
    elif fmt == "TIFF":
        kw = {"compression": rng.choice(["raw", "tiff_lzw", "tiff_deflate", "packbits", "tiff_adobe_deflate"])}
        if kw["compression"] == "raw" and mode == "1":
            kw = {}
    elif fmt == "WEBP":
        kw = {"quality": rng.randint(5, 100), "lossless": rng.random() < 0.2}
    try:
        return _encode(img, fmt, **kw)
    except (OSError, ValueError, KeyError):
        return _encode(img.convert("RGB"), "PNG")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, raw: bytes, colour_type: int = 2, bit_depth: int = 8) -> bytes:
    return _png_idat(width, height, zlib.compress(raw, 9), colour_type, bit_depth)


def _png_idat(width: int, height: int, idat: bytes, colour_type: int = 2, bit_depth: int = 8) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


@functools.lru_cache(maxsize=16)
def _zeros_deflated(nbytes: int) -> bytes:
    """zlib stream of `nbytes` zero bytes, compressed in 1 MiB steps (never holds the raw data)."""
    comp, block, out = zlib.compressobj(9), bytes(1 << 20), []
    while nbytes > 0:
        out.append(comp.compress(block[: min(nbytes, len(block))]))
        nbytes -= len(block)
    out.append(comp.flush())
    return b"".join(out)


def _huge_header(rng: random.Random) -> bytes:
    """A tiny file that declares enormous dimensions."""
    w, h = rng.choice([(100_000, 100_000), (65_535, 65_535), (2**31 - 1, 1), (1, 39_999_999), (50_000, 20_000),
                       (0, 100), (100, 0), (2**32 - 1, 2**32 - 1), (9_000, 9_000)])
    fmt = rng.choice(["PNG", "GIF", "BMP", "TIFF", "JPEG", "WEBP"])
    if fmt == "PNG":
        return _png(w, h, b"\x00" * rng.randint(0, 64))
    if fmt == "GIF":
        return b"GIF89a" + struct.pack("<HHBBB", w & 0xFFFF, h & 0xFFFF, 0x80, 0, 0) + bytes(6) + b",\x00\x00\x00\x00" \
            + struct.pack("<HH", w & 0xFFFF, h & 0xFFFF) + b"\x00\x02\x02\x44\x01\x00;"
    if fmt == "BMP":
        header = struct.pack("<IiiHHIIiiII", 40, min(w, 2**31 - 1), min(h, 2**31 - 1), 1, 24, 0, 0, 0, 0, 0, 0)
        return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + header + bytes(16)
    if fmt == "TIFF":
        base = bytearray(_encode(Image.new("RGB", (4, 4)), "TIFF"))
        # Patch ImageWidth (256) and ImageLength (257) in the first IFD.
        ifd = struct.unpack_from("<I", base, 4)[0]
        count = struct.unpack_from("<H", base, ifd)[0]
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, typ = struct.unpack_from("<HH", base, entry)
            if tag in (256, 257):
                value = w if tag == 256 else h
                if typ == 3:
                    struct.pack_into("<H", base, entry + 8, value & 0xFFFF)
                else:
                    struct.pack_into("<I", base, entry + 8, value & 0xFFFFFFFF)
        return bytes(base)
    if fmt == "JPEG":
        base = bytearray(_encode(Image.new("RGB", (16, 16), (200, 150, 120)), "JPEG"))
        sof = base.find(b"\xff\xc0")
        struct.pack_into(">HH", base, sof + 5, h & 0xFFFF, w & 0xFFFF)
        return bytes(base)
    base = bytearray(_encode(Image.new("RGB", (16, 16), (200, 150, 120)), "WEBP", lossless=True))
    pos = base.find(b"VP8L")
    if pos > 0:  # 14-bit width-1 / height-1 fields after the 0x2f signature byte
        bits = ((min(w, 16384) - 1) & 0x3FFF) | (((min(h, 16384) - 1) & 0x3FFF) << 14)
        struct.pack_into("<I", base, pos + 9, bits | (struct.unpack_from("<I", base, pos + 9)[0] & ~0xFFFFFFF))
    return bytes(base)


def _aspect(rng: random.Random) -> bytes:
    """A real (decodable) image with an absurd aspect ratio."""
    n = rng.choice([25, 100, 1_000, 8_000, 16_000, 65_000])
    w, h = (1, n) if rng.random() < 0.5 else (n, rng.choice([1, 2, 3]))
    fmt = rng.choice(["PNG", "PNG", "GIF", "BMP", "TIFF", "JPEG", "WEBP"])
    if fmt == "WEBP":
        w, h = min(w, 16383), min(h, 16383)
    img = Image.new("RGB", (w, h), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    try:
        return _encode(img, fmt)
    except (OSError, ValueError):
        return _encode(img, "PNG")


def _bomb(rng: random.Random) -> bytes:
    """Highly compressed large images: a few KB that decode to tens of megapixels."""
    side = rng.choice([1_100, 2_000, 3_000, 5_000, 7_000, 9_000])
    return _bomb_of(side, rng.choice(["png", "png_gray", "gif", "tiff"]))


@functools.lru_cache(maxsize=32)
def _bomb_of(side: int, kind: str) -> bytes:
    if kind == "png":
        return _png_idat(side, side, _zeros_deflated(side * (1 + 3 * side)))
    if kind == "png_gray":
        return _png_idat(side, side, _zeros_deflated(side * (1 + side)), colour_type=0)
    if kind == "gif":
        side = min(side, 6_000)
        return _encode(Image.new("P", (side, side), 0), "GIF")
    side = min(side, 4_000)
    return _encode(Image.new("L", (side, side), 0), "TIFF", compression="tiff_deflate")


def _truncated(rng: random.Random) -> bytes:
    data = _valid(rng)
    return data[: rng.randint(1, max(1, len(data) - 1))]


def _short_png(rng: random.Random) -> bytes:
    """A PNG whose compressed data is complete and valid but holds fewer rows than its header says."""
    w, h = rng.randint(4, 64), rng.randint(4, 64)
    rows = rng.randint(0, h - 1)
    return _png(w, h, b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(3 * w)) for _ in range(rows)))


def _bitflip(rng: random.Random) -> bytes:
    data = bytearray(_valid(rng))
    for _ in range(rng.choice([1, 2, 4, 16, 64])):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _header_damage(rng: random.Random) -> bytes:
    """Damage within the first bytes, where the format's size and layout fields live."""
    data = bytearray(_valid(rng))
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(min(len(data), 64))] = rng.randrange(256)
    return bytes(data)


def _random_bytes(rng: random.Random) -> bytes:
    n = rng.choice([1, 2, 7, 100, 1_000, 20_000])
    prefix = rng.choice([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM",
                         b"RIFF\x00\x00\x00\x00WEBP"])
    return prefix + rng.randbytes(n)


def _document(rng: random.Random) -> bytes:
    return rng.choice([
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
        b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
        b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]><x>&a;</x>",
        b"PK\x03\x04" + bytes(26) + b"evil.txt", b"\x1f\x8b\x08\x00" + bytes(16), b'{"image": "data:..."}',
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "ünïcödé text\n".encode() * 20,
        b"\xef\xbb\xbf" + b"text with a BOM\n", bytes(1000),
    ])


def _polyglot(rng: random.Random) -> bytes:
    img = _valid(rng, rng.choice(["JPEG", "PNG", "GIF"]))
    tail = rng.choice([b"PK\x03\x04" + bytes(40), b"<html><script>alert(1)</script></html>", b"%PDF-1.4\n" + bytes(64),
                       rng.randbytes(500)])
    return rng.choice([img + tail, tail + img, img[:20] + tail + img[20:]])


def _exif(rng: random.Random) -> bytes:
    """JPEGs whose EXIF block is odd: every orientation, out-of-range ones, a damaged block."""
    img = _photo(rng, rng.randint(8, 64), rng.randint(8, 64))
    exif = Image.Exif()
    exif[0x0112] = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 255, 65535])
    raw = exif.tobytes()
    if rng.random() < 0.4:
        damaged = bytearray(raw)
        for _ in range(4):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        raw = bytes(damaged)
    return _encode(img, "JPEG", exif=raw)


def _multiframe(rng: random.Random) -> bytes:
    frames = [_photo(rng, 32, 32) for _ in range(rng.randint(2, 4))]
    fmt = rng.choice(["GIF", "TIFF", "PNG", "WEBP"])
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:])


def _large_lossless(rng: random.Random) -> bytes:
    """A real, decodable large image in a lossless format (issue 23: a 313 KB PNG of 40 MP took the server to
    3 GB with Grad-CAM): a textured picture blown up (nearest), so it compresses well."""
    fmt = rng.choice(["PNG", "PNG", "TIFF", "WEBP"])
    mode = rng.choice(["RGB", "RGBA", "P", "L"] if fmt != "WEBP" else ["RGB", "RGBA"])
    sizes = [(1600, 1200), (4000, 3000), (7296, 5472), (6400, 6400)]
    if fmt == "WEBP":  # Pillow decodes WebP through 4 full-size copies: its limit is a quarter of the others'
        sizes = [(1600, 1200), (3648, 2736), (4000, 3000)]
    return _large_of(fmt, mode, rng.choice(sizes), rng.randrange(4))


@functools.lru_cache(maxsize=48)
def _large_of(fmt: str, mode: str, size: tuple[int, int], seed: int) -> bytes:
    rng = random.Random(seed)
    w, h = size
    small = _photo(rng, w // 8, h // 8)
    if mode == "RGBA":
        alpha = Image.fromarray(np.tile(np.linspace(40, 255, w // 8, dtype=np.uint8), (h // 8, 1)))
        small = Image.merge("RGBA", (*small.split(), alpha))
    elif mode != "RGB":
        small = small.convert(mode)
    img = small.resize(size, Image.Resampling.NEAREST)
    options: dict[str, dict[str, Any]] = {"WEBP": {"quality": 80}, "TIFF": {"compression": "tiff_deflate"}}
    kw = options.get(fmt, {})
    return _encode(img, fmt, **kw)


def _deep(rng: random.Random) -> bytes:
    """Float and 16-bit images (TIFF F, TIFF / PNG I;16, TIFF I): ranges [0, 1], [0, 255], negative, huge,
    NaN and infinities; small random ones and large compressible ones."""
    if rng.random() < 0.15:
        return _deep_large(rng.choice(["F", "I;16", "I"]), rng.choice([(3000, 2000), (7000, 5000)]), rng.randrange(3))
    w, h = rng.randint(8, 200), rng.randint(8, 200)
    nrng = np.random.default_rng(rng.randrange(2**32))
    mode = rng.choice(["F", "F", "I;16", "I"])
    if mode == "F":
        scale = rng.choice([1.0, 255.0, 1e6, -1.0, 1e38])
        arr = (nrng.random((h, w)) * scale).astype(np.float32)
        for value in rng.sample([np.nan, np.inf, -np.inf, -5.0, 3e38], rng.randint(0, 3)):
            arr[nrng.random((h, w)) < 0.1] = value
        return _encode(Image.fromarray(arr, "F"), "TIFF")
    if mode == "I;16":
        arr16 = nrng.integers(0, 65536, (h, w), dtype=np.uint16)
        return _encode(Image.fromarray(arr16), rng.choice(["PNG", "TIFF"]))
    arr = nrng.integers(-(2**31), 2**31 - 1, (h, w), dtype=np.int64).astype(np.int32)
    return _encode(Image.fromarray(arr, "I"), "TIFF")


@functools.lru_cache(maxsize=8)
def _deep_large(mode: str, size: tuple[int, int], seed: int) -> bytes:
    nrng = np.random.default_rng(seed)
    w, h = size
    small = nrng.random((h // 50, w // 50)).astype(np.float32)
    if mode == "F":
        small[0, 0] = np.nan
        img = Image.fromarray(small, "F")
    elif mode == "I;16":
        img = Image.fromarray((small * 65535).astype(np.uint16))
    else:
        img = Image.fromarray((small * 70000).astype(np.int32), "I")
    return _encode(img.resize(size, Image.Resampling.NEAREST), "TIFF", compression="tiff_deflate")


# ------------------------------------------------------------------------------------ multipart bodies
def _multipart(rng: random.Random) -> tuple[bytes, bytes, str]:
    """A malformed (or merely unusual) multipart/form-data body: (photo, body, content type)."""
    photo = _valid(rng, "PNG")
    b = "fuzz" + "".join(rng.choice("abcdef0123456789") for _ in range(16))
    part = (f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + photo + b"\r\n"
    end = f"--{b}--\r\n".encode()
    ct = f"multipart/form-data; boundary={b}"
    kind = rng.randrange(12)
    if kind == 0:
        return photo, part, ct  # no closing boundary
    if kind == 1:
        return photo, part + part + end, ct  # two image parts
    if kind == 2:
        return photo, part + end, "multipart/form-data"  # no boundary parameter
    if kind == 3:
        return photo, part + end, "multipart/form-data; boundary=other"  # wrong boundary
    if kind == 4:
        return photo, part.replace(b"Content-Disposition: form-data; ", b"") + end, ct  # no disposition
    if kind == 5:
        return photo, f"--{b}\r\nX-Long: {'a' * 20000}\r\n\r\n".encode() + photo + b"\r\n" + end, ct
    if kind == 6:
        return photo, b"", ct  # empty body
    if kind == 7:
        return photo, part[: rng.randint(1, len(part) - 1)], ct  # cut anywhere
    if kind == 8:
        return photo, part.replace(b'name="image"', b'name="photo"') + end, ct  # wrong field
    if kind == 9:
        return photo, part * 12 + end, ct  # too many parts
    if kind == 10:
        data = bytearray(part + end)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return photo, bytes(data), ct
    return photo, part + end, ct + "; charset=" + "x" * rng.randint(1, 300)  # odd but valid


KINDS: dict[str, tuple[float, Callable[[random.Random], bytes]]] = {
    # kind: (weight, generator)
    "valid": (10, _valid),
    "truncated": (12, _truncated),
    "short_png": (3, _short_png),
    "bitflip": (14, _bitflip),
    "header_damage": (10, _header_damage),
    "huge_dimensions": (8, _huge_header),
    "absurd_aspect": (8, _aspect),
    "bomb": (3, _bomb),
    "zero_byte": (1, lambda rng: b""),
    "random_bytes": (8, _random_bytes),
    "document": (5, _document),
    "polyglot": (5, _polyglot),
    "exif": (4, _exif),
    "multiframe": (3, _multiframe),
    "large_lossless": (2, _large_lossless),
    "float_16bit": (4, _deep),
}


def fuzz_cases(n: int, seed: int = 0, multipart: bool = True, bombs: bool = True,
               specials: bool = False) -> Iterator[FuzzCase]:
    """`n` hostile inputs, deterministic for a seed. `multipart`: include malformed request bodies
    (API only, ~10%); `bombs`: include decompression bombs and large lossless images (slow-ish: up to
    81 MP of zeros, 41 MP pictures); `specials`: include folder entries that are not files (CLI only, ~2%)."""
    rng = random.Random(seed)
    kinds = [k for k in KINDS if bombs or k not in ("bomb", "large_lossless")]
    weights = [KINDS[k][0] for k in kinds]
    for _ in range(n):
        if specials and rng.random() < 0.02:
            yield FuzzCase("not_a_file", b"", special=rng.choice(SPECIALS))
            continue
        if multipart and rng.random() < 0.1:
            photo, body, ct = _multipart(rng)
            yield FuzzCase("bad_multipart", photo, body, ct)
            continue
        kind = rng.choices(kinds, weights)[0]
        yield FuzzCase(kind, KINDS[kind][1](rng))
