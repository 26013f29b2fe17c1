"""Robust image loading: every photo becomes a fully decoded, upright, 8-bit RGB `PIL.Image`, or, for
the model (`min_size`), one reduced to a bounded working size on the way.

Memory: the decoded image in its own mode is the only full-size buffer. A 40 MP PNG with alpha costs its
160 MB decode plus a few MB (exotic modes are converted in bands, never as whole-image float64 or RGBA
copies); with `min_size` the result is at most a few megapixels whatever the photo's size.

Torch-free on purpose (the inference path imports it). Anything that cannot be loaded raises
`ImageLoadError` with a specific reason instead of whatever Pillow happened to raise.
"""

from __future__ import annotations

import ctypes
import errno
import io
import logging
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import (
    BmpImagePlugin,  # noqa: F401 - each plugin import registers one format of IMAGE_FORMATS with Image.open
    ExifTags,
    GifImagePlugin,  # noqa: F401
    Image,
    ImageFile,
    Jpeg2KImagePlugin,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    PpmImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
    features,
)

from hypoderm.errors import HypodermError

# 64 megapixels: far above any phone photo (a 200 MP sensor is the exception), far below what
# would exhaust memory once decoded (64e6 * 3 bytes = 192 MB of RGB).
MAX_PIXELS: int = 64_000_000
# Largest file `load_rgb` reads: above an uncompressed 64 MP RGB TIFF (192 MB), far above any phone photo
# (2-10 MB). A bigger file is refused without being read (a 3 GiB video once cost predict 3.2 GB).
MAX_FILE_BYTES: int = 256 * 1024 * 1024

# Longest side / shortest side (MAX_ASPECT_RATIO, 1:20): checked here from the header,
# before any pixel is decoded, so a 117-byte 1 x 8000 PNG is refused instead of becoming a 5 GB resize.

# `img.info[SOURCE_SIZE_KEY]`: the upright (width, height) of the photo as stored, which differs from
# `img.size` when it was decoded at reduced scale (`min_size`).
SOURCE_SIZE_KEY = "hypoderm_source_size"

# Longest side / shortest side accepted. Resizing the shorter side of a 1 x 8000 strip to 256 px
# would allocate 256 x 2,048,000 px (~1.5 GB of RGB, more inside the resampler); phone panoramas
# stay under 1:8. load_rgb refuses such files from their header, before decoding; check_aspect_ratio
# guards every other way an image reaches a resize (hypoderm.inference.preprocess).
MAX_ASPECT_RATIO: float = 20.0


class ImageShapeError(HypodermError, ValueError):
    """An image whose shape the spec cannot turn into a model input without an absurd allocation.
    `.reason` is "bad_aspect_ratio", the same code ImageLoadError uses."""

    reason = "bad_aspect_ratio"


def check_aspect_ratio(width: int, height: int) -> None:
    """Raise ImageShapeError for an empty image or one longer than MAX_ASPECT_RATIO times its width."""
    if width < 1 or height < 1:
        raise ImageShapeError(f"empty image ({width}x{height} px)")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageShapeError(f"extreme aspect ratio: {width}x{height} px is more than {MAX_ASPECT_RATIO:g} times "
                              "longer than wide; crop the photo to the skin area")



# Every mode we know how to turn into RGB; anything else is reported, not guessed.
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageLoadError(HypodermError, ValueError):
    """A file that is not a usable image. `str(e)` is the human reason, `.reason` a short code:
    "empty", "not_image", "truncated", "corrupt", "too_large", "bad_aspect_ratio", "unreadable" or
    "not_a_file" (a broken or looping symbolic link, a link to a folder, a FIFO, a device, a socket)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# Formats Pillow knows and this app does not read, by their first bytes: named in the refusal so that the user
# knows what to convert. EPS and PostScript are programs (Pillow renders them by running Ghostscript).
_FOREIGN_FORMATS = {
    b"%!PS": "EPS/PostScript", b"%!": "PostScript", b"\xc5\xd0\xd3\xc6": "EPS/PostScript",
    b"8BPS": "Photoshop PSD", b"\x00\x00\x01\x00": "Windows icon", b"\x00\x00\x02\x00": "Windows cursor",
    b"icns": "macOS icon", b"DDS ": "DirectDraw surface", b"qoif": "QOI", b"SIMPLE  =": "FITS",
}


def _sniff(head: bytes) -> str:
    """What a non-image file looks like, from its first bytes (for the error message)."""
    h = head.lstrip()[:512]
    low = h.lower()
    if head.startswith(b"%PDF"):
        return "PDF document"
    foreign = next((name for magic, name in _FOREIGN_FORMATS.items() if head.startswith(magic)), None)
    if foreign:
        return f"{foreign}: not a format this app reads; save the photo as JPEG or PNG"
    if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low or b"<head" in low:
        return "HTML page"
    if low.startswith(b"<svg") or (low.startswith(b"<?xml") and b"<svg" in low):
        return "SVG vector drawing; convert it to PNG or JPEG"
    if low.startswith(b"<?xml"):
        return "XML document"
    if head[4:8] == b"ftyp":
        brands = _ftyp_brands(head)
        if brands & _AVIF_BRANDS:  # only when Pillow lacks AVIF: a damaged AVIF is "corrupt" (_looks_like_image)
            return "AVIF image, but this installation's Pillow cannot decode AVIF; convert it to JPEG"
        if brands & _HEIC_BRANDS:
            return ("HEIC photo, not supported; convert it to JPEG, PNG, WebP or AVIF (an iPhone saves JPEG with "
                    "Settings > Camera > Formats > Most Compatible)")
        return "MP4/MOV video"
    if head.startswith(b"PK\x03\x04"):
        return "ZIP archive or Office document"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "AVI video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska/WebM video"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"7z\xbc\xaf")):
        return "compressed archive"
    if head.startswith(b"{") or head.startswith(b"["):
        return "JSON/text file"
    try:
        h.decode("utf-8")
        return "text file"
    except UnicodeDecodeError:
        return "unrecognised binary data"


_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}  # mif1: any HEIF
_AVIF_BRANDS = {b"avif", b"avis"}  # checked first: an AVIF lists mif1 too
_AVIF_DECODER = features.check("avif")  # Pillow >= 11.2 decodes AVIF when built with libavif


def _ftyp_brands(head: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO-BMFF `ftyp` box (HEIC, AVIF, MP4, MOV ...)."""
    size = int.from_bytes(head[:4], "big")
    end = min(len(head), size if 16 <= size <= 4096 else 16)
    return {head[8:12]} | {head[i: i + 4] for i in range(16, end - 3, 4)}


# What _sniff names that no image can be: a file over the byte limit that starts like one of these is refused
# as "not an image" (the more useful message); any other large file as "too large".
_CONTAINERS = {"PDF document", "MP4/MOV video", "AVI video", "Matroska/WebM video", "ZIP archive or Office document",
               "compressed archive"}


def _looks_like_image(head: bytes) -> str | None:
    """Image format named by the magic bytes, if any (a damaged header is then 'corrupt')."""
    if head[4:8] == b"ftyp" and _AVIF_DECODER and _ftyp_brands(head) & _AVIF_BRANDS:
        return "AVIF"
    signatures = {
        b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF", b"BM": "BMP",
        b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
    }
    for magic, name in signatures.items():
        if head.startswith(magic):
            return name
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    return None


def is_image_like(path: str | os.PathLike[str]) -> bool:
    """True for a regular file that a user may mean as a photo: an image file extension, or an image format's
    magic bytes (JPEG, PNG, GIF, BMP, TIFF, WebP, AVIF) or HEIC's, whatever the name. False for a document
    beside the photos (README.md, manifest.csv, notes.pdf); reads at most 32 bytes, opens no other kind of file."""
    p = Path(path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        if not p.is_file() or p.is_symlink():
            return True  # not a plain file: read_image_file reports it with its reason
        with open(p, "rb") as f:
            head = f.read(32)
    except OSError:
        return True  # unreadable: reported as an error, not skipped
    return _looks_like_image(head) is not None or (head[4:8] == b"ftyp" and bool(_ftyp_brands(head) & _HEIC_BRANDS))


# The formats Image.open may try, and no other (its `formats` allow-list): raster photo formats, each decoded by
# Pillow's own code or a library linked into it, and never a plugin that runs a delegate program (Pillow's EPS
# plugin writes the upload to /tmp and runs Ghostscript on it; PDF and PostScript are programs too). Pillow's other
# plugins (icons, PSD, TGA, FITS, video stills ...) are no photo a phone or a dermatoscope saves: refused before they
# parse a byte. A phone's multi-picture JPEG (MPO) opens through the JPEG plugin. The plugins are imported above.
IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "JPEG2000")
if _AVIF_DECODER:
    from PIL import AvifImagePlugin  # noqa: F401 - registers AVIF (Pillow >= 11.2 built with libavif)

    IMAGE_FORMATS += ("AVIF",)

# Extensions Pillow decodes out of the box; a file with one of them that is not really an image
# is kept in the index and reported by `check_images`, not silently skipped.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm",
})
# ... and what a user may mean as a photo too: phone formats refused (HEIC) or decoded (AVIF) with a reason.
IMAGE_SUFFIXES: frozenset[str] = IMAGE_EXTENSIONS | {".heic", ".heif", ".avif"}


# Pixels converted at a time from a mode that needs a temporary copy (alpha, 16-bit, float, CMYK, palette):
# the whole-image copies of a 40 MP photo (float64 arrays, an RGBA composite) cost 1-1.6 GB; bands of
# 0.26 MP bound them to a few MB whatever the photo's size.
BAND_PIXELS = 1 << 18
# Full-size copies of the image Pillow holds while decoding a format, where more than one. WebP goes through
# libwebp's animation decoder: its canvas, the canvas kept for the next frame, the bytes handed to Pillow and
# the image (a 40 MP WebP took 640 MB). Such a format's pixel limit is max_pixels / copies, so that its decode
# needs no more memory than any other image at the limit.
_DECODE_COPIES = {"WEBP": 4}
_ORIENTATION_TRANSPOSE = {  # EXIF Orientation -> the transpose that makes the photo upright (as ImageOps)
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _to_rgb(img: Image.Image, factor: int = 1) -> Image.Image:
    """Convert any supported mode to 8-bit RGB without clipping or dropping alpha badly, reduced `factor`
    times (Pillow's `reduce`: a box filter) on the way. Modes that need a temporary copy are converted
    band by band, so nothing as large as the decoded image is ever allocated besides the result."""
    if img.mode in ("RGB", "L"):
        small = img.reduce(factor) if factor > 1 else img
        return small if small.mode == "RGB" else small.convert("RGB")
    convert = _band_converter(img)
    width, height = img.size
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    rows = max(1, BAND_PIXELS // width // factor) * factor  # a multiple of factor: the boxes do not straddle bands
    for top in range(0, height, rows):
        band = convert(img.crop((0, top, width, min(height, top + rows))))
        out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return out


def _band_converter(img: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """The function that turns one band of `img` (same mode) into 8-bit RGB."""
    mode = img.mode
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        # A palette with a transparent index behaves like an alpha image.
        return lambda band: _composite_on_white(band.convert("RGBA"))
    if mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_rgb
    if mode == "F":
        scale = _float_scale(img)
        return lambda band: _float_to_rgb(band, scale)
    try:
        # L, 1, P, CMYK, YCbCr, RGBX, LAB, HSV ...: Pillow's conversions are right for these.
        img.crop((0, 0, 1, 1)).convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageLoadError(f"unsupported colour mode {mode!r} ({e})", "unreadable") from e
    return lambda band: band.convert("RGB")


def _sixteen_bit_to_rgb(band: Image.Image) -> Image.Image:
    """Pillow's own I;16 -> L conversion clips at 255; scale the full 16-bit range instead (round(v / 257),
    in integers: v / 257 is never exactly halfway)."""
    arr = np.clip(np.asarray(band), 0, 65535).astype(np.uint32)
    return Image.fromarray(((arr + 128) // 257).astype(np.uint8), "L").convert("RGB")


def _finite(band: Image.Image) -> np.ndarray:
    """A float band as float64 (a new array) with NaN and infinities set to 0."""
    arr = np.array(band, dtype=np.float64)
    return np.nan_to_num(arr, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def _float_scale(img: Image.Image) -> float:
    """Float images have no standard range: [0, 1] if every value fits in it (scale 255), else [0, 255]."""
    width, height = img.size
    rows = max(1, BAND_PIXELS // width)
    for top in range(0, height, rows):
        arr = _finite(img.crop((0, top, width, min(height, top + rows))))
        if arr.min() < 0.0 or arr.max() > 1.0:
            return 1.0
    return 255.0


def _float_to_rgb(band: Image.Image, scale: float) -> Image.Image:
    arr = _finite(band)
    arr *= scale
    np.round(np.clip(arr, 0, 255, out=arr), out=arr)
    return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _classify(e: BaseException, head: bytes, total: int) -> ImageLoadError:
    """Turn whatever a Pillow plugin raised into 'truncated' or 'corrupt'."""
    message = str(e)
    low = message.lower()
    riff_short = head.startswith(b"RIFF") and len(head) >= 8 and int.from_bytes(head[4:8], "little") + 8 > total
    if "truncated" in low or "end of file" in low or isinstance(e, EOFError) or riff_short:
        return ImageLoadError("truncated image", "truncated")
    return ImageLoadError(f"corrupt image data ({message or type(e).__name__})", "corrupt")


def _silence_libtiff() -> None:
    """Stop libtiff printing its warnings and errors ("TIFFFetchNormalTag: Incorrect count ...") on
    stderr: it writes them from C, past Python's `warnings`, straight onto the user's terminal.
    Pillow still sees the failure itself (the decoder returns an error), so nothing is lost. Needs
    the libtiff copy that Pillow loaded, found in /proc/self/maps (Linux); elsewhere a no-op."""
    try:
        from PIL import _imaging  # noqa: F401 - loads Pillow's libtiff

        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "/libtiff" in line}
    except OSError:
        return
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            for name in ("TIFFSetWarningHandler", "TIFFSetErrorHandler"):
                fn = getattr(lib, name)
                fn.restype = ctypes.c_void_p
                fn.argtypes = [ctypes.c_void_p]
                fn(None)
        except (OSError, AttributeError):
            continue


_silence_libtiff()
# Pillow logs some decode problems ("More samples per pixel than can be decoded") at WARNING; with no
# handler configured, Python's last-resort handler prints them on stderr. The error itself still
# reaches the caller as an ImageLoadError; an application that configures logging still sees them.
logging.getLogger("PIL").addHandler(logging.NullHandler())
# Pillow warns (Python `warnings`) about harmless oddities: a damaged EXIF block, a TIFF tag larger
# than the file, and (DecompressionBombWarning) sizes our own max_pixels check already bounds. They are
# not errors here and must not reach the user's terminal. Set once for the process, for warnings
# raised inside PIL only: `warnings.catch_warnings()` per decode is not thread-safe, and the server
# and `predict` decode in several threads.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"PIL\.")

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_raw_size(width: int, height: int, bit_depth: int, colour_type: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines a complete PNG image inflates to (PNG spec 11.2.2, 8.2 Adam7)."""
    bits = bit_depth * _PNG_CHANNELS.get(colour_type, 4)
    passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
              if interlaced else [(0, 0, 1, 1)])
    total = 0
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w > 0 and h > 0:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def _png_data_short(data: bytes | memoryview) -> bool:
    """True when a PNG's IDAT stream inflates to fewer bytes than its header's size needs.

    Pillow decodes such a file without error and leaves the missing rows black; a photo with its
    bottom cut off must be reported as truncated instead. Inflates 64 KiB of input into at most 1 MiB
    at a time (bounded memory) and stops as soon as enough bytes have come out."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return False
    width, height, bit_depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    need = _png_raw_size(width, height, bit_depth, colour_type, interlace == 1)
    inflater, got, pos = zlib.decompressobj(), 0, 8
    try:
        while pos + 8 <= len(data) and got < need:
            length, kind = struct.unpack(">I4s", data[pos: pos + 8])
            if kind == b"IDAT":
                idat = data[pos + 8: pos + 8 + length]
                for start in range(0, len(idat), 1 << 16):  # 64 KiB at a time: unconsumed_tail is a copy
                    chunk: bytes | memoryview = idat[start: start + (1 << 16)]
                    while chunk and got < need:
                        got += len(inflater.decompress(chunk, 1 << 20))
                        chunk = inflater.unconsumed_tail
            elif kind == b"IEND":
                break
            pos += 12 + length
    except zlib.error:
        return False  # damaged data: Pillow has already said so, or will
    return got < need


def _open(fp: io.BytesIO, head: bytes, total: int) -> Image.Image:
    """Image.open (reads the header only), with Pillow's errors turned into ImageLoadErrors."""
    try:
        return Image.open(fp, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"too many pixels ({e})", "too_large") from e
    except UnidentifiedImageError as e:
        fmt = _looks_like_image(head)
        if fmt:
            raise ImageLoadError(f"corrupt image data (damaged {fmt} header)", "corrupt") from e
        raise ImageLoadError(f"not an image file ({_sniff(head)})", "not_image") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:
        raise _classify(e, head, total) from e


def _check_size(img: Image.Image, max_pixels: int) -> None:
    """Refuse from the header, before any pixel is decoded: too many pixels, empty, extreme aspect ratio."""
    width, height = img.size
    if width * height > max_pixels:
        raise ImageLoadError(f"too many pixels: {width * height} > limit {max_pixels}", "too_large")
    copies = _DECODE_COPIES.get(img.format or "", 1)
    if width * height * copies > max_pixels:
        raise ImageLoadError(f"too many pixels for a {img.format} image: {width * height} > limit "
                             f"{max_pixels // copies} (decoding {img.format} takes {copies} times the memory of "
                             "other formats); save it as JPEG or PNG", "too_large")
    if width < 1 or height < 1:
        raise ImageLoadError(f"corrupt image data (size {width}x{height})", "corrupt")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageLoadError(f"extreme aspect ratio: {width}x{height} px is more than {MAX_ASPECT_RATIO:g} times "
                             "longer than wide; crop the photo to the skin area", "bad_aspect_ratio")


def _decode_reduced(img: Image.Image, min_size: int) -> None:
    """Ask the decoder itself for a smaller image where the format allows it (before `load`).

    JPEG DCT scaling: decode at 1/2, 1/4 or 1/8 scale, the smallest that keeps the shorter side >= min_size.
    A 12 MP photo then decodes to 0.76 MP (min_size 512): 1/16 of the memory, no 12 MP resize afterwards,
    and ~35% less decode time (the entropy decoding is done in full). JPEG 2000 has resolution levels (each
    halves the size). PNG, WebP, TIFF, GIF and BMP decode in full; `_to_rgb` reduces them afterwards."""
    if img.format == "JPEG":
        img.draft(img.mode, (min_size, min_size))
    elif isinstance(img, Jpeg2KImagePlugin.Jpeg2KImageFile):
        levels = 0
        while min(img.size) >> (levels + 1) >= min_size:
            levels += 1
        img.reduce = levels


def _load_pixels(img: Image.Image, head: bytes, total: int) -> None:
    """Decode everything now (Pillow is lazy, and truncation would otherwise surface later)."""
    try:
        img.load()
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"too many pixels ({e})", "too_large") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:
        raise _classify(e, head, total) from e
    except MemoryError as e:
        raise ImageLoadError("too many pixels: not enough memory to decode", "too_large") from e


def _orientation(img: Image.Image) -> int:
    """The EXIF (or XMP) Orientation tag, 1 when absent; a malformed EXIF block must not cost us an otherwise
    good photo."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
        return value if isinstance(value, int) else 1
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises many kinds of errors on damaged blocks
        return 1


def _decode(fp: io.BytesIO, head: bytes, total: int, max_pixels: int, min_size: int | None = None) -> Image.Image:
    img = _open(fp, head, total)
    width, height = img.size
    _check_size(img, max_pixels)
    if min_size:
        _decode_reduced(img, min_size)
    _load_pixels(img, head, total)
    if img.format == "PNG" and _png_data_short(fp.getbuffer()):
        raise ImageLoadError("truncated image (the PNG's pixel data ends before its last row)", "truncated")
    orientation = _orientation(img)
    # Every format: a box-filter reduction by the largest whole factor that keeps the shorter side >= min_size
    # (for a JPEG, after its DCT scaling), fused with the conversion to RGB; the model's resize is the one
    # resample after it. Images under 2 x min_size keep every pixel.
    factor = max(1, min(img.size) // min_size) if min_size else 1
    rgb = _to_rgb(img, factor)
    if rgb is not img:
        img.close()  # the full-size decode is no longer needed
    if orientation in _ORIENTATION_TRANSPOSE:
        rgb = rgb.transpose(_ORIENTATION_TRANSPOSE[orientation])
    turned = orientation in (5, 6, 7, 8)  # EXIF orientation swaps width and height
    rgb.info[SOURCE_SIZE_KEY] = (height, width) if turned else (width, height)
    return rgb


def load_rgb_bytes(data: bytes, max_pixels: int = MAX_PIXELS, min_size: int | None = None) -> Image.Image:
    """Decode an encoded image held in memory (e.g. an upload) to upright 8-bit RGB.

    `min_size`: the shorter side the caller needs (`hypoderm.inference.preprocess.decode_min_size(spec)`). A JPEG
    is then decoded at the smallest DCT scale (1/1, 1/2, 1/4, 1/8) whose shorter side is still >=
    min_size, a JPEG 2000 at its matching resolution level, and every image is then reduced (box filter,
    Pillow's `reduce`) by the largest whole factor that keeps the shorter side >= min_size: the result's
    shorter side is below 2 x min_size unless the photo's was. Every caller that passes None (training,
    the decoded cache) gets full resolution."""
    if not data:
        raise ImageLoadError("zero-byte file", "empty")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone switched Pillow to silently pad truncated files; we cannot detect them then.
        warnings.warn("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated images will not be detected",
                      RuntimeWarning, stacklevel=2)
    return _decode(io.BytesIO(data), bytes(data[:1024]), len(data), max_pixels, min_size)


def load_rgb(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS, min_size: int | None = None,
             max_bytes: int = MAX_FILE_BYTES) -> Image.Image:
    """Load an image file: fully decoded, EXIF orientation applied, 8-bit RGB (`min_size`: see load_rgb_bytes).
    The file is checked before it is read (read_image_file): only a regular file of at most `max_bytes`."""
    return load_rgb_bytes(read_image_file(path, max_bytes), max_pixels=max_pixels, min_size=min_size)


def read_image_file(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a file, checked before they are read: a missing path, a broken or looping symbolic link,
    a folder, a named pipe (FIFO), a device or a socket is refused without being opened (reading a FIFO blocks
    forever, /dev/zero never ends); a file over `max_bytes` is refused without being read (a video in the
    photo folder: "not an image file (MP4/MOV video)" when its first bytes say so, else "file too large")."""
    p = Path(path)
    _check_regular(p, _stat(p))
    try:
        # O_NONBLOCK: should the path have become a FIFO since the check, opening it must not block
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise _os_error(e) from e
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        _check_regular(p, info)  # the file opened is the one checked
        try:
            head = f.read(1024)
            if info.st_size > max_bytes:
                kind = None if _looks_like_image(head) else _sniff(head)
                if kind in _CONTAINERS:
                    raise ImageLoadError(f"not an image file ({kind})", "not_image")
                raise ImageLoadError(f"file too large: {info.st_size} bytes > limit {max_bytes} bytes", "too_large")
            data = head + f.read(max_bytes + 1 - len(head))  # never past the limit, even if the file grows
        except OSError as e:
            raise _os_error(e) from e
    if len(data) > max_bytes:
        raise ImageLoadError(f"file too large: more than the limit of {max_bytes} bytes", "too_large")
    return data


def walk_folder(root: str | os.PathLike[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every entry below `root` that is not a folder (a symbolic link to a folder included: reported, not followed),
    sorted, leaving out hidden entries (a name starting with '.') and all inside hidden folders; and each folder
    (`root` included) that could not be listed, with the reason, so that a caller reports it like an unreadable file
    instead of skipping its photos without a word. Iterative (a stack of folders, not recursion): a folder nested
    thousands of levels deep is walked like any other (Path.rglob and os.walk recursed: RecursionError)."""
    entries: list[Path] = []
    unlisted: list[tuple[Path, str]] = []
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                children = list(it)
        except OSError as e:
            why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or str(e))
            unlisted.append((folder, f"cannot list this folder ({why}); the photos in it were not read"))
            continue
        for entry in children:
            if entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_folder = False  # cannot tell: the file's own check reports it
            (stack if is_folder else entries).append(Path(entry.path))
    return sorted(entries), sorted(unlisted)


def _stat(p: Path) -> os.stat_result:
    """os.stat of `p` (following links), with each way it can fail said in words."""
    try:
        return p.stat()
    except FileNotFoundError as e:
        if p.is_symlink():
            raise ImageLoadError(f"broken symbolic link (its target {os.readlink(p)!r} does not exist)",
                                 "not_a_file") from e
        raise ImageLoadError("file not found", "unreadable") from e
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageLoadError("symbolic link loop (the link points, maybe through others, back at itself)",
                                 "not_a_file") from e
        raise _os_error(e) from e


def _check_regular(p: Path, info: os.stat_result) -> None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        if p.is_symlink():
            raise ImageLoadError("symbolic link to a folder (not followed when a folder is searched)", "not_a_file")
        raise ImageLoadError("is a directory, not an image file", "unreadable")
    kinds = [(stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")]
    kind = next((name for test, name in kinds if test(mode)), "special file")
    raise ImageLoadError(f"not a regular file but a {kind}; not opened", "not_a_file")


def _os_error(e: OSError) -> ImageLoadError:
    if isinstance(e, PermissionError):
        return ImageLoadError("permission denied", "unreadable")
    return ImageLoadError(f"cannot read file ({e.strerror or e})", "unreadable")
