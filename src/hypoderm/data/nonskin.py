"""A seeded generator of photo-like pictures that are not skin, to test (and fit) the not-skin gate.

Eight families, drawn with numpy and Pillow only: gradients (linear, radial, rainbow, skin-toned),
wood, sand, walls (painted, stucco, tiles; many beige / skin-toned), paper, food, fabrics (plain
weave, twill, plaid, knit) and skin-toned plastics. Many are deliberately skin-coloured: the colour
rule alone cannot reject them. Each picture gets a camera-like finish (uneven light, sensor
noise, slight blur, JPEG) so that it is not trivially clean.

`FIT` and `TEST` are two different parameter ranges: `benchmarks/nonskin/fit_gate.py` fits the gate
on `FIT` pictures made from one set of seeds (and training's outlier exposure shows the model `FIT`
pictures too: hypoderm.engine.outliers), the tests measure it on `TEST` pictures from other seeds, so
the test measures generalisation to new pictures and somewhat wider ranges, not memorisation. (Both
come from the same families, so the test says nothing about kinds of pictures that are not drawn
here: `sample_photos` adds real ones.)

`sample_photos()`: real photographs that are not of skin and ship inside well-known Python packages
(scikit-image's `skimage/data`, scikit-learn's sample images, Matplotlib's sample data), for the
packages that are installed; their licences are in each package's data README (public domain, CC0
or CC-BY). Photos showing a person are left out.
"""

from __future__ import annotations

import colorsys
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FAMILIES = ("gradients", "wood", "sand", "walls", "paper", "food", "fabrics", "plastics")


@dataclass(frozen=True)
class Ranges:
    """Parameter ranges of one suite; each picture draws its values uniformly inside them."""

    size: tuple[int, int]  # shorter side in pixels (the longer one is up to 1.5x)
    noise: tuple[float, float]  # Gaussian sensor noise, std in 8-bit levels
    jpeg: tuple[int, int]  # JPEG quality
    light: float  # largest relative change of brightness across the frame
    scale: tuple[float, float]  # multiplies every texture's feature size (grain, thread, plank)
    blur: tuple[float, float]  # Gaussian blur radius in pixels


FIT = Ranges(size=(224, 320), noise=(0.5, 3.0), jpeg=(70, 95), light=0.15, scale=(0.8, 1.25), blur=(0.0, 0.6))
TEST = Ranges(size=(160, 400), noise=(0.0, 5.0), jpeg=(55, 98), light=0.25, scale=(0.6, 1.6), blur=(0.0, 1.0))

# RGB anchors from very light to very dark skin; skin-toned objects pick a point between two.
SKIN_TONES = np.array([(255, 226, 204), (241, 194, 167), (224, 172, 140), (198, 134, 96), (161, 102, 66),
                       (120, 74, 46), (84, 52, 34)], dtype=np.float64)


def skin_tone(rng: np.random.Generator) -> np.ndarray:
    """A random colour on the skin-tone line, with a little jitter."""
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    c = SKIN_TONES[i] * (1 - (t - i)) + SKIN_TONES[i + 1] * (t - i)
    return np.clip(c + rng.normal(0, 6, 3), 0, 255)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _colour(rng: np.random.Generator, skin_share: float = 0.5) -> np.ndarray:
    """A skin tone with probability `skin_share`, else any colour."""
    if rng.random() < skin_share:
        return skin_tone(rng)
    return _hsv(rng.random(), rng.uniform(0.1, 0.9), rng.uniform(0.3, 1.0))


def _smooth(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Smooth random field in about [-1, 1] with features `cells` pixels across."""
    gh, gw = max(2, int(h / cells) + 2), max(2, int(w / cells) + 2)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float64)


def _coords(h: int, w: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by `angle` (radians): u along, v across."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    return xx * c + yy * s, -xx * s + yy * c


def _fill(h: int, w: int, colour: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, dtype=np.float64), (h, w, 3)).copy()


def gradients(rng: np.random.Generator, h: int, w: int, k: float) -> np.ndarray:
    kind = rng.choice(["linear", "radial", "rainbow", "skin"])
    u, _ = _coords(h, w, rng.uniform(0, 2 * np.pi))
    t = (u - u.min()) / max(np.ptp(u), 1e-9)
    if kind == "radial":
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        d = np.hypot(yy - cy, xx - cx)
        t = d / d.max()
    if kind == "rainbow":
        h0, span = rng.random(), rng.uniform(0.5, 1.0)
        s, v = rng.uniform(0.4, 1.0), rng.uniform(0.6, 1.0)
        hsv = np.stack([((h0 + span * t) % 1.0) * 255, np.full_like(t, s * 255), np.full_like(t, v * 255)], axis=-1)
        return np.asarray(Image.fromarray(np.round(hsv).astype(np.uint8), "HSV").convert("RGB"), dtype=np.float64)
    c0 = skin_tone(rng) if kind == "skin" else _colour(rng)
    c1 = skin_tone(rng) if kind == "skin" else _colour(rng)
    return c0 * (1 - t[..., None]) + c1 * t[..., None]


def wood(rng: np.random.Generator, h: int, w: int, k: float) -> np.ndarray:
    base = np.array([(222, 184, 135), (193, 154, 107), (160, 110, 60), (101, 67, 33), (150, 80, 50),
                     (180, 120, 70), (120, 50, 30), (230, 200, 160)][rng.integers(8)], dtype=np.float64)
    base = np.clip(base + rng.normal(0, 10, 3), 0, 255)
    u, v = _coords(h, w, rng.uniform(0, np.pi))
    period = rng.uniform(6, 18) * k
    warp = _smooth(rng, h, w, rng.uniform(40, 120)) * rng.uniform(4, 20) * k
    phase = 2 * np.pi * (v + warp) / period
    rings = (0.5 + 0.5 * np.sin(phase)) ** rng.uniform(1, 4)
    fibres = _smooth(rng, h, w, max(1.5, 2.5 * k))
    shade = 1 - rng.uniform(0.15, 0.4) * rings + rng.uniform(0.02, 0.08) * fibres
    if rng.random() < 0.5:  # planks: dark seams along the grain
        width = rng.uniform(50, 120) * k
        seam = np.abs(((v + rng.uniform(0, width)) % width) - width / 2) > width / 2 - 1.5
        shade = np.where(seam, shade * 0.55, shade)
    return base * shade[..., None]


def sand(rng: np.random.Generator, h: int, w: int, k: float) -> np.ndarray:
    base = np.array([(194, 178, 128), (230, 210, 170), (210, 150, 90), (150, 120, 80), (170, 165, 155),
                     (238, 214, 175)][rng.integers(6)], dtype=np.float64)
    base = np.clip(base + rng.normal(0, 8, 3), 0, 255)
    grain = _smooth(rng, h, w, max(1.2, rng.uniform(1.2, 3.0) * k)) * rng.uniform(10, 30)
    colour_grain = rng.normal(0, rng.uniform(2, 8), (h, w, 3))
    u, _ = _coords(h, w, rng.uniform(0, np.pi))
    ripples = np.sin(2 * np.pi * u / (rng.uniform(30, 90) * k)) * rng.uniform(0, 15)
    out = base + (grain + ripples)[..., None] + colour_grain
    speck = rng.random((h, w)) < rng.uniform(0.005, 0.03)
    out[speck] *= rng.uniform(0.3, 0.7)
    return out


def walls(rng: np.random.Generator, h: int, w: int, k: float) -> np.ndarray:
    colour = _colour(rng, skin_share=0.6) if rng.random() < 0.8 else _hsv(0, 0, rng.uniform(0.5, 1.0))
    kind = rng.choice(["paint", "stucco", "tiles"])
    shade = 1 + 0.03 * _smooth(rng, h, w, rng.uniform(30, 100))
    if kind == "stucco":
        shade = shade + rng.uniform(0.02, 0.08) * _smooth(rng, h, w, max(1.5, rng.uniform(2, 6) * k))
    out = colour * shade[..., None]
    if kind == "tiles":
        size = rng.uniform(25, 80) * k
        yy, xx = np.mgrid[0:h, 0:w]
        grout = ((yy % size) < 2) | ((xx % size) < 2)
        out[grout] = out[grout] * rng.uniform(0.5, 0.9)
    if rng.random() < 0.3:  # a corner: the other plane is lit differently
        x0 = int(rng.uniform(0.2, 0.8) * w)
        out[:, x0:] *= rng.uniform(0.7, 0.9)
    return out


def paper(rng: np.random.Generator, h: int, w: int, k: float) -> np.ndarray:
    colour = np.array([(250, 250, 248), (245, 238, 220), (238, 228, 200), (200, 170, 130), (235, 235, 240)]
                      [rng.integers(5)], dtype=np.float64) + rng.normal(0, 4, 3)
    out = colour * (1 + 0.02 * _smooth(rng, h, w, max(1.5, 3 * k)))[..., None]
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    kind = rng.choice(["plain", "ruled", "text"])
    step = int(rng.uniform(14, 28) * k)
    if kind == "ruled":
        for y in range(int(rng.uniform(0, step)), h, step):
            draw.line([(0, y), (w, y)], fill=(150, 170, 220), width=1)
    elif kind == "text":
        for y in range(int(rng.uniform(5, step)), h - 8, step):
            x = int(rng.uniform(5, 20))
            while x < w - 10:
                word = int(rng.uniform(10, 45) * k)
                draw.rectangle([x, y, min(x + word, w - 5), y + max(2, step // 3)], fill=(40, 40, 50))
                x += word + int(rng.uniform(5, 10))
    out = np.asarray(img, dtype=np.float64)
    if rng.random() < 0.4:  # a fold
        u, _ = _coords(h, w, rng.uniform(0, np.pi))
        out *= np.where(u > np.median(u), 1.0, rng.uniform(0.85, 0.95))[..., None]
    return out


def food(rng: np.random.Generator, h: int, w: int, k: float) -> np.ndarray:
    kind = rng.choice(["bread", "grains", "fruit", "pizza", "cookies", "greens"])
    plate = _fill(h, w, _hsv(0, 0, rng.uniform(0.75, 1.0)))
    img = Image.fromarray(np.clip(plate, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)

    def blobs(n: int, r: tuple[float, float], colour: Callable[[], tuple[int, int, int]]) -> None:
        for _ in range(n):
            cx, cy, rx = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(*r) * k
            ry = rx * rng.uniform(0.5, 1.0)
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour())

    def jitter(c: tuple[int, int, int], s: float = 12) -> Callable[[], tuple[int, int, int]]:
        def draw() -> tuple[int, int, int]:
            r, g, b = (int(v) for v in np.clip(np.array(c) + rng.normal(0, s, 3), 0, 255))
            return r, g, b
        return draw

    if kind == "bread":
        draw.rectangle([0, 0, w, h], fill=jitter((200, 150, 90), 20)())
        blobs(int(h * w / 300), (1.5, 5), jitter((150, 100, 55)))
        blobs(int(h * w / 900), (1, 3), jitter((240, 215, 170)))
    elif kind == "grains":
        c = [(245, 240, 225), (235, 200, 120), (200, 150, 80), (150, 90, 50)][rng.integers(4)]
        blobs(int(h * w / 40), (2.5, 5), jitter(c, 15))
    elif kind == "fruit":
        c = [(245, 140, 30), (230, 180, 60), (220, 60, 40), (240, 200, 150)][rng.integers(4)]
        blobs(int(rng.integers(1, 6)), (50, 140), jitter(c, 10))
    elif kind == "pizza":
        draw.rectangle([0, 0, w, h], fill=jitter((230, 190, 120), 15)())
        blobs(int(h * w / 2500), (6, 16), jitter((200, 50, 40), 20))
        blobs(int(h * w / 1500), (4, 10), jitter((250, 230, 160), 15))
    elif kind == "cookies":
        blobs(int(rng.integers(3, 9)), (30, 70), jitter((205, 150, 90), 15))
        blobs(int(h * w / 500), (2, 5), jitter((70, 40, 25)))
    else:
        blobs(int(h * w / 150), (5, 14), jitter((70, 140, 50), 25))
    out = np.asarray(img, dtype=np.float64)
    return out * (1 + 0.08 * _smooth(rng, h, w, max(1.5, 2 * k)))[..., None]


def fabrics(rng: np.random.Generator, h: int, w: int, k: float) -> np.ndarray:
    kind = rng.choice(["plain", "twill", "plaid", "knit"])
    c1, c2 = _colour(rng), _colour(rng) if rng.random() < 0.5 else None
    c2 = c1 * rng.uniform(0.7, 0.95) if c2 is None else c2
    u, v = _coords(h, w, rng.uniform(0, np.pi))
    p = rng.uniform(3, 8) * k
    across_u = 0.5 + 0.5 * np.cos(2 * np.pi * u / p)
    across_v = 0.5 + 0.5 * np.cos(2 * np.pi * v / p)
    if kind == "plain":
        top = ((np.floor(u / p) + np.floor(v / p)) % 2) == 0
    elif kind == "twill":
        top = (np.floor((u + v) / p) % 3) != 0
    elif kind == "knit":
        top = (np.abs(((u / p) % 2) - 1) * 2 + (v / p)) % 2 < 1
    else:
        big = rng.uniform(20, 60) * k
        stripe = (((u % big) < big / 3) ^ ((v % big) < big / 4))
        top = ((np.floor(u / p) + np.floor(v / p)) % 2) == 0
        c_alt = _colour(rng)
        base = np.where(stripe[..., None], c_alt, c1)
        return base * np.where(top, 0.8 + 0.2 * across_v, 0.8 + 0.2 * across_u)[..., None]
    shade = np.where(top, 0.75 + 0.25 * across_v, 0.75 + 0.25 * across_u)
    return np.where(top[..., None], c1, c2) * shade[..., None]


def plastics(rng: np.random.Generator, h: int, w: int, k: float) -> np.ndarray:
    bg = _hsv(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.3, 1.0)) if rng.random() < 0.6 else skin_tone(rng)
    out = _fill(h, w, bg)
    colour = skin_tone(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.4, 1.2) * h, rng.uniform(0.4, 1.2) * w
    d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    inside = d < 1 if rng.random() < 0.5 else (np.abs(yy - cy) < ry * 0.7) & (np.abs(xx - cx) < rx * 0.7)
    ly, lx = cy - rng.uniform(0.1, 0.3) * h, cx - rng.uniform(-0.3, 0.3) * w
    light = 1.05 - rng.uniform(0.2, 0.5) * (((yy - ly) / ry) ** 2 + ((xx - lx) / rx) ** 2)
    spec = np.exp(-(((yy - ly) ** 2 + (xx - lx) ** 2) / (2 * (rng.uniform(4, 20) * k) ** 2)))
    obj = colour * np.clip(light, 0.4, 1.2)[..., None] + 255 * rng.uniform(0.3, 0.9) * spec[..., None]
    out[inside] = obj[inside]
    return out


GENERATORS: dict[str, Callable[[np.random.Generator, int, int, float], np.ndarray]] = {
    "gradients": gradients, "wood": wood, "sand": sand, "walls": walls, "paper": paper, "food": food,
    "fabrics": fabrics, "plastics": plastics}


def finish(arr: np.ndarray, rng: np.random.Generator, r: Ranges) -> Image.Image:
    """Camera-like finish: uneven light, sensor noise, slight blur, JPEG round trip."""
    h, w = arr.shape[:2]
    u, _ = _coords(h, w, rng.uniform(0, 2 * np.pi))
    light = 1 + rng.uniform(-r.light, r.light) * (u - u.mean()) / max(np.ptp(u), 1e-9)
    arr = arr * light[..., None] + rng.normal(0, rng.uniform(*r.noise), arr.shape)
    img = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "RGB")
    radius = rng.uniform(*r.blur)
    if radius > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(r.jpeg[0], r.jpeg[1] + 1)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def picture(family: str, seed: int, r: Ranges = TEST) -> Image.Image:
    """One non-skin picture of `family`, fully determined by (family, seed, r)."""
    if family not in GENERATORS:
        raise ValueError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    rng = np.random.default_rng([FAMILIES.index(family), seed])
    short = int(rng.integers(r.size[0], r.size[1] + 1))
    long = int(short * rng.uniform(1.0, 1.5))
    h, w = (short, long) if rng.random() < 0.5 else (long, short)
    return finish(GENERATORS[family](rng, h, w, float(rng.uniform(*r.scale))), rng, r)


def suite(per_family: int, first_seed: int, r: Ranges = TEST) -> list[tuple[str, Image.Image]]:
    """`per_family` pictures of every family with seeds first_seed, first_seed + 1, ..."""
    return [(f, picture(f, first_seed + i, r)) for f in FAMILIES for i in range(per_family)]


# ---- real photos: the close-ups a user would frame ---------------------------------------------

def kovac_fraction(rgb: np.ndarray) -> float:
    """Share of skin-coloured pixels by Kovac, Peer & Solina's (2003) RGB rule (R > 95, G > 40,
    B > 20, max - min > 15, |R - G| > 15, R > G, R > B). Not the gate's rule, so using it to pick
    close-ups that show skin does not pick them by the gate's own colour test."""
    a = rgb.astype(np.int32)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    ok = ((r > 95) & (g > 40) & (b > 20) & (a.max(axis=-1) - a.min(axis=-1) > 15) & (np.abs(r - g) > 15)
          & (r > g) & (r > b))
    return float(ok.mean())


def closeups(img: Image.Image, rng: np.random.Generator, n: int) -> list[Image.Image]:
    """`n` square close-ups of a photo: side 20-60% of its shorter side, at random positions."""
    return [img.crop(closeup_box(img.size, rng)) for _ in range(n)]


def closeup_box(size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """The box (left, top, right, bottom) of one `closeups` square in a picture of `size` (w, h)."""
    w, h = size
    s = max(16, int(min(w, h) * rng.uniform(0.2, 0.6)))
    x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
    return x, y, x + s, y + s


# ---- real photos that are not skin, shipped inside Python packages -----------------------------

# (package, path inside it, file) of every photo used. Left out on purpose: skimage's astronaut and
# matplotlib's grace_hopper (people: they show skin), and pure drawings/charts are kept because a user
# may photograph a screen or a page.
SAMPLE_PHOTOS: tuple[tuple[str, str, str], ...] = (
    *(("skimage", "data", f) for f in (
        "brick.png", "camera.png", "cell.png", "chelsea.png", "chessboard_RGB.png", "clock_motion.png",
        "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg",
        "ihc.png", "logo.png", "microaneurysms.png", "moon.png", "motorcycle_left.png", "page.png", "retina.jpg",
        "rocket.jpg", "text.png", "phantom.png")),
    ("sklearn", "datasets/images", "china.jpg"),
    ("sklearn", "datasets/images", "flower.jpg"),
    ("matplotlib", "mpl-data/sample_data", "Minduka_Present_Blue_Pack.png"),
    ("matplotlib", "mpl-data/sample_data", "logo2.png"),
)


def sample_photos() -> list[tuple[str, Image.Image]]:
    """(name, RGB image) of every SAMPLE_PHOTOS file whose package is installed (none are downloaded;
    transparency is composited on white)."""
    import importlib.util
    from pathlib import Path

    out = []
    for package, folder, name in SAMPLE_PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / folder / name
        if not path.is_file():
            continue
        with Image.open(path) as im:
            im.load()
            img = im.convert("RGBA") if im.mode in ("P", "LA", "PA", "RGBA") else im.convert("RGB")
        if img.mode == "RGBA":
            white = Image.new("RGB", img.size, (255, 255, 255))
            white.paste(img, mask=img.split()[3])
            img = white
        out.append((f"{package}:{name}", img))
    return out
