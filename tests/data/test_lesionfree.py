"""hypoderm.data.lesionfree and `hypoderm data lesion-free`: lesion-free skin squares cut away from the widened
lesion mask and from pen ink, written with their photo's group and origin as normal skin."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hypoderm.cli import main
from hypoderm.data.dataset import DatasetError, load_index
from hypoderm.data.lesionfree import CutOptions, ink_mask, lesion_free_boxes, widen
from hypoderm.imaging.colour import skin_mask

SKIN = (196, 140, 112)


def skin_photo(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.array(SKIN, np.float32) + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def lesion_photo(folder: Path, name: str, w: int = 400, h: int = 300, centre: tuple[int, int] = (200, 150),
                 radius: int = 40, pen: bool = True, seed: int = 0) -> tuple[str, str]:
    """A skin photo with a dark lesion (and, if `pen`, a blue pen circle drawn around it, outside the mask) and its
    300 x 300 mask (white = lesion), as the PAD-UFES-20 masks are. Returns (photo, mask) names."""
    img = Image.fromarray(skin_photo(w, h, seed))
    d = ImageDraw.Draw(img)
    cx, cy = centre
    d.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(90, 50, 40))
    if pen:
        r = radius + 18
        d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(40, 60, 200), width=3)
    img.save(folder / f"{name}.jpg", quality=95)
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
    mask.resize((300, 300), Image.Resampling.NEAREST).save(folder / f"{name}_mask.png")
    return f"{name}.jpg", f"{name}_mask.png"


def write_manifest(folder: Path, rows: list[dict[str, str]]) -> Path:
    path = folder / "index.csv"
    fields = ["path", "label", "group", "origin", "fine_label", "lesion_mask"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows([{k: r.get(k, "") for k in fields} for r in rows])
    return path


def test_widen_is_a_box_dilation() -> None:
    m = np.zeros((9, 9), bool)
    m[4, 4] = True
    assert widen(m, 2).sum() == 25 and widen(m, 2)[2:7, 2:7].all() and not widen(m, 2)[1, 4]
    assert (widen(m, 0) == m).all()
    edge = np.zeros((5, 5), bool)
    edge[0, 0] = True
    assert widen(edge, 1).sum() == 4  # clipped at the border


def test_ink_is_blue_pen_not_skin() -> None:
    rgb = np.array([[SKIN, (40, 60, 200), (250, 250, 250), (20, 20, 20), (120, 60, 160)]], np.uint8)
    assert ink_mask(rgb).tolist() == [[False, True, False, False, True]]


def test_squares_avoid_the_widened_mask_and_the_pen_circle(tmp_path: Path) -> None:
    photo, mask = lesion_photo(tmp_path, "p", pen=True)
    rgb = np.asarray(Image.open(tmp_path / photo).convert("RGB"))
    lesion = np.asarray(Image.open(tmp_path / mask).resize((400, 300), Image.Resampling.NEAREST)) > 127
    opts = CutOptions(per_photo=4, side=0.3, margin=0.08, tries=400)
    boxes = lesion_free_boxes(rgb, lesion, opts, np.random.default_rng(0))
    assert len(boxes) >= 2
    grown = widen(lesion, round(0.08 * 300))
    for x, y, s in boxes:
        assert s == 90
        assert not grown[y:y + s, x:x + s].any()
        assert ink_mask(rgb[y:y + s, x:x + s]).mean() <= opts.max_ink
        assert skin_mask(rgb[y:y + s, x:x + s]).mean() >= opts.min_skin
    # without widening, the pen circle (outside the mask) is what the ink check still keeps out
    bare = lesion_free_boxes(rgb, lesion, CutOptions(per_photo=8, side=0.3, margin=0.0, tries=2000),
                             np.random.default_rng(1))
    assert all(ink_mask(rgb[y:y + s, x:x + s]).mean() <= opts.max_ink for x, y, s in bare)


def test_no_square_when_the_lesion_fills_the_photo(tmp_path: Path) -> None:
    photo, mask = lesion_photo(tmp_path, "big", w=200, h=200, centre=(100, 100), radius=95, pen=False)
    rgb = np.asarray(Image.open(tmp_path / photo).convert("RGB"))
    lesion = np.asarray(Image.open(tmp_path / mask).resize((200, 200))) > 127
    assert lesion_free_boxes(rgb, lesion, CutOptions(), np.random.default_rng(0)) == []


def test_the_manifest_keeps_every_photo_and_adds_squares_with_their_group_and_origin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for i in range(3):
        photo, mask = lesion_photo(data, f"les{i}", seed=i)
        rows.append({"path": photo, "label": "other_lesion", "group": f"P{i}", "origin": "clinic",
                     "fine_label": "BCC", "lesion_mask": mask})
    photo, mask = lesion_photo(data, "full", w=200, h=200, centre=(100, 100), radius=95, pen=False)
    rows.append({"path": photo, "label": "other_lesion", "group": "P9", "origin": "clinic", "lesion_mask": mask})
    Image.fromarray(skin_photo(120, 120, 7)).save(data / "n0.jpg")
    rows.append({"path": "n0.jpg", "label": "normal_skin", "group": "N0", "origin": "web"})
    out = tmp_path / "lf"
    assert main(["data", "lesion-free", str(write_manifest(data, rows)), "--out", str(out), "--side", "0.3"]) == 0
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert [Path(r["path"]).name for r in got[:5]] == [r["path"] for r in rows]  # every photo, in order
    assert all(Path(r["path"]).is_absolute() for r in got[:5])
    squares = got[5:]
    assert 4 <= len(squares) <= 6 and {r["label"] for r in squares} == {"normal_skin"}
    assert {r["group"] for r in squares} <= {"P0", "P1", "P2"} and {r["origin"] for r in squares} == {"clinic"}
    assert all(r["lesion_mask"] == "" and r["fine_label"] == "lesion-free skin beside other_lesion (BCC)"
               for r in squares)
    # each square is the photo's own pixels (cut at full resolution), away from the lesion
    first = squares[0]
    src = np.asarray(Image.open(data / f"les{first['group'][1]}.jpg").convert("RGB"))
    sq = np.asarray(Image.open(out / first["path"]))
    hits = [(y, x) for y in range(src.shape[0] - sq.shape[0] + 1) for x in range(src.shape[1] - sq.shape[1] + 1)
            if np.array_equal(src[y, x], sq[0, 0]) and np.array_equal(src[y:y + sq.shape[0], x:x + sq.shape[1]], sq)]
    assert hits
    # the training pipeline reads it (the originals lie outside the new manifest's folder)
    index = load_index(str(out / "manifest.csv"), allow_outside_paths=True)
    assert len(index.samples) == len(got)


def test_refusals_are_specific(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    photo, mask = lesion_photo(data, "a")
    manifest = write_manifest(data, [{"path": photo, "label": "other_lesion", "lesion_mask": mask}])
    with pytest.raises(DatasetError, match="'normal_skin' is not a class"):
        from hypoderm.data.lesionfree import cut_lesion_free
        cut_lesion_free(manifest, tmp_path / "o1", "normal_skin")
    assert main(["data", "lesion-free", str(manifest), "--out", str(tmp_path / "o2"),
                 "--normal-label", "other_lesion"]) == 0
    assert main(["data", "lesion-free", str(manifest), "--out", str(tmp_path / "o2"),
                 "--normal-label", "other_lesion"]) == 2  # never writes over an earlier set
    assert "already holds a lesion-free set" in capsys.readouterr().err
    no_mask = tmp_path / "plain.csv"
    no_mask.write_text("path,label\na.jpg,x\n", encoding="utf-8")
    assert main(["data", "lesion-free", str(no_mask), "--out", str(tmp_path / "o3")]) == 2
    assert "no column lesion_mask" in capsys.readouterr().err
    assert main(["data", "lesion-free", str(manifest), "--out", str(tmp_path / "o4"), "--side", "2"]) == 2
    assert "side must be in" in capsys.readouterr().err
    (data / mask).unlink()  # a listed mask that is gone: that photo is named, nothing else stops
    assert main(["data", "lesion-free", str(manifest), "--out", str(tmp_path / "o5"),
                 "--normal-label", "other_lesion"]) == 1
    assert "skipped a.jpg" in capsys.readouterr().err
