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
import io
import logging
import os
import re
import struct
import warnings
import zlib
from collections.abc import Callable

import numpy as np
from PIL import ExifTags, Image, ImageFile, Jpeg2KImagePlugin, UnidentifiedImageError

from hypoderm.errors import HypodermError
from hypoderm.imaging.files import MAX_FILE_BYTES, read_image_file
from hypoderm.imaging.formats import IMAGE_FORMATS, ImageLoadError, _looks_like_image, _sniff

# 64 megapixels: far above any phone photo (a 200 MP sensor is the exception), far below what
# would exhaust memory once decoded (64e6 * 3 bytes = 192 MB of RGB).
MAX_PIXELS: int = 64_000_000

# The largest file load_rgb reads: MAX_FILE_BYTES (hypoderm.imaging.files.read_image_file).

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


def _too_many_pixels(e: Image.DecompressionBombError, max_pixels: int) -> ImageLoadError:
    """Pillow's own bomb check (twice its MAX_IMAGE_PIXELS, above any limit of ours) said in our words, with the
    limit that applies here, as `_check_size` says it."""
    found = re.search(r"\((\d+) pixels\)", str(e))
    if found:
        return _over_limit(int(found.group(1)), max_pixels)
    return ImageLoadError(f"too many pixels: more than the limit of {max_pixels}", "too_large")


def _over_limit(pixels: int, max_pixels: int) -> ImageLoadError:
    return ImageLoadError(f"too many pixels: {pixels} > limit {max_pixels}", "too_large")


def _open(fp: io.BytesIO, head: bytes, total: int, max_pixels: int) -> Image.Image:
    """Image.open (reads the header only), with Pillow's errors turned into ImageLoadErrors."""
    try:
        return Image.open(fp, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as e:
        raise _too_many_pixels(e, max_pixels) from e
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
        raise _over_limit(width * height, max_pixels)
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


def _load_pixels(img: Image.Image, head: bytes, total: int, max_pixels: int) -> None:
    """Decode everything now (Pillow is lazy, and truncation would otherwise surface later)."""
    try:
        img.load()
    except Image.DecompressionBombError as e:
        raise _too_many_pixels(e, max_pixels) from e
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
    img = _open(fp, head, total, max_pixels)
    width, height = img.size
    _check_size(img, max_pixels)
    if min_size:
        _decode_reduced(img, min_size)
    _load_pixels(img, head, total, max_pixels)
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
