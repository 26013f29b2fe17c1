"""hypoderm.imaging.io: bad files get specific errors; every mode becomes correct 8-bit RGB."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypoderm.imaging.io import MAX_PIXELS, ImageLoadError, load_rgb, load_rgb_bytes
from hypoderm_testkit.datasets import make_bad_files


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height with no pixel data: a cheap decompression-bomb header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.mark.parametrize("name", ["empty.jpg", "document.jpg", "webpage.png", "truncated.jpg", "corrupt.png"])
def test_bad_files_have_specific_reasons(tmp_path: Path, name: str) -> None:
    expected = make_bad_files(tmp_path)
    with pytest.raises(ImageLoadError) as info:
        load_rgb(tmp_path / name)
    assert info.value.reason == expected[name]


def test_error_messages_say_what_the_file_is(tmp_path: Path) -> None:
    make_bad_files(tmp_path)
    messages = {}
    for name in ("empty.jpg", "document.jpg", "webpage.png", "truncated.jpg"):
        with pytest.raises(ImageLoadError) as info:
            load_rgb(tmp_path / name)
        messages[name] = str(info.value)
    assert messages["empty.jpg"] == "zero-byte file"
    assert messages["document.jpg"] == "not an image file (PDF document)"
    assert messages["webpage.png"] == "not an image file (HTML page)"
    assert messages["truncated.jpg"] == "truncated image"


def test_truncated_png_is_reported(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    with pytest.raises(ImageLoadError) as info:
        load_rgb_bytes(data[: len(data) // 2])
    assert info.value.reason == "truncated"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="file not found") as info:
        load_rgb(tmp_path / "nope.jpg")
    assert info.value.reason == "unreadable"
    with pytest.raises(ImageLoadError, match="directory"):
        load_rgb(tmp_path)


def test_too_many_pixels_under_our_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(10_000, 10_000))  # 100 MP > 64 MP default, < Pillow's own limit
    with pytest.raises(ImageLoadError) as info:
        load_rgb(path)
    assert info.value.reason == "too_large"
    assert str(info.value) == f"too many pixels: 100000000 > limit {MAX_PIXELS}"


def test_decompression_bomb_becomes_too_large() -> None:
    # 400 MP is above twice Pillow's MAX_IMAGE_PIXELS: Pillow itself raises DecompressionBombError.
    with pytest.raises(ImageLoadError) as info:
        load_rgb_bytes(_png_header_only(20_000, 20_000))
    assert info.value.reason == "too_large"
    # said in our words with the limit that applies (not Pillow's "could be decompression bomb DOS attack")
    assert str(info.value) == f"too many pixels: 400000000 > limit {MAX_PIXELS}"
    with pytest.raises(ImageLoadError, match=r"^too many pixels: 400000000 > limit 40000000$"):
        load_rgb_bytes(_png_header_only(20_000, 20_000), max_pixels=40_000_000)


def test_custom_pixel_limit() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (48, 48)).save(buf, "PNG")
    with pytest.raises(ImageLoadError, match="2304 > limit 1000"):
        load_rgb_bytes(buf.getvalue(), max_pixels=1000)
    assert load_rgb_bytes(buf.getvalue(), max_pixels=2304).size == (48, 48)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_rotated_image_comes_out_upright(tmp_path: Path, fmt: str) -> None:
    # Stored landscape 40x20, red left half; Orientation 6 = "rotate 90° clockwise to display",
    # so the upright photo is portrait 20x40 with red on top.
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"rotated.{fmt.lower()}"
    Image.fromarray(arr).save(path, fmt, exif=exif.tobytes())
    img = load_rgb(path)
    assert img.size == (20, 40)
    out = np.asarray(img).astype(int)
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60  # top: red
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60  # bottom: blue


def _roundtrip(img: Image.Image, fmt: str = "PNG") -> np.ndarray:
    buf = io.BytesIO()
    img.save(buf, fmt)
    out = load_rgb_bytes(buf.getvalue())
    assert out.mode == "RGB"
    return np.asarray(out)


def test_grayscale_to_rgb() -> None:
    out = _roundtrip(Image.new("L", (4, 4), 100))
    assert (out == 100).all()


def test_bilevel_to_rgb() -> None:
    img = Image.new("1", (4, 4), 0)
    img.putpixel((0, 0), 1)
    out = _roundtrip(img)
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [0, 0, 0]


def test_rgba_composited_on_white() -> None:
    arr = np.zeros((2, 2, 4), dtype=np.uint8)
    arr[0, 0] = (255, 0, 0, 255)   # opaque red stays red
    arr[0, 1] = (255, 0, 0, 0)     # fully transparent -> white
    arr[1, 0] = (0, 0, 0, 128)     # half-transparent black -> mid grey
    out = _roundtrip(Image.fromarray(arr, "RGBA")).astype(int)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert np.all(np.abs(out[1, 0] - 127) <= 1)


def test_la_composited_on_white() -> None:
    arr = np.array([[[0, 0], [0, 255]]], dtype=np.uint8)  # transparent black, opaque black
    out = _roundtrip(Image.fromarray(arr, "LA"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [0, 0, 0]


def test_palette_with_and_without_transparency() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([0, 255, 0, 10, 20, 30] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    out = _roundtrip(img)
    assert out[0, 0].tolist() == [0, 255, 0] and out[0, 1].tolist() == [10, 20, 30]
    img.info["transparency"] = 0  # index 0 transparent -> white
    out = _roundtrip(img)
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [10, 20, 30]


def test_palette_alpha_mode() -> None:
    # No common file format stores PA, so check the conversion on the in-memory image.
    from hypoderm.imaging.io import _to_rgb

    img = Image.new("PA", (2, 1))
    img.putpalette([200, 0, 0] + [0] * 765)
    img.putpixel((0, 0), (0, 0))    # red, alpha 0 -> white
    img.putpixel((1, 0), (0, 255))  # red, opaque -> red
    assert np.asarray(_to_rgb(img)).tolist() == [[[255, 255, 255], [200, 0, 0]]]


def test_cmyk_to_rgb() -> None:
    img = Image.new("CMYK", (2, 1))
    img.putpixel((0, 0), (0, 0, 0, 0))        # no ink -> white
    img.putpixel((1, 0), (0, 255, 255, 0))    # magenta + yellow -> red
    out = _roundtrip(img, "JPEG").astype(int)
    assert np.all(out[0, 0] >= 245)
    assert out[0, 1, 0] > 200 and out[0, 1, 1] < 60 and out[0, 1, 2] < 60


def test_16bit_grayscale_is_scaled_not_clipped() -> None:
    arr = np.array([[0, 1000, 257 * 100, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    out = _roundtrip(img)  # PNG keeps 16 bits
    assert out[0, :, 0].tolist() == [0, 4, 100, 255]


def test_32bit_integer_mode_is_scaled_as_16bit() -> None:
    arr = np.array([[0, 32896, 65535, 70000]], dtype=np.int32)
    out = _roundtrip(Image.fromarray(arr, "I"), "TIFF")
    assert out[0, :, 0].tolist() == [0, 128, 255, 255]


def test_float_mode() -> None:
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert _roundtrip(Image.fromarray(unit, "F"), "TIFF")[0, :, 0].tolist() == [0, 128, 255]
    wide = np.array([[0.0, 100.0, 300.0]], dtype=np.float32)
    assert _roundtrip(Image.fromarray(wide, "F"), "TIFF")[0, :, 0].tolist() == [0, 100, 255]


def test_path_and_bytes_agree(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(path)
    a, b = np.asarray(load_rgb(path)), np.asarray(load_rgb_bytes(path.read_bytes()))
    assert a.shape == (30, 50, 3) and np.array_equal(a, b)


def test_io_module_does_not_import_torch() -> None:
    code = "import sys, hypoderm.imaging.io; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
