"""What a file is, from its first bytes: the raster formats the loader opens (IMAGE_FORMATS, Image.open's
allow-list), the file name extensions taken as photos, the refusal's words for everything else (a PDF, a video, a
HEIC photo ...), and ImageLoadError, the one error of a file that is not a usable image. Torch-free."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import (
    BmpImagePlugin,  # noqa: F401 - each plugin import registers one format of IMAGE_FORMATS with Image.open
    GifImagePlugin,  # noqa: F401
    Jpeg2KImagePlugin,  # noqa: F401
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    PpmImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    WebPImagePlugin,  # noqa: F401
    features,
)

from hypoderm.errors import HypodermError


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
