// Square crop with pan and zoom (drag, pinch, wheel, slider). The crop is cut at the photo's own
// resolution (integer pixel box, no browser resampling); a large square is then box-reduced exactly as
// hypoderm.inference.preprocess step 2 says (Pillow's reduce, preprocess.js reduceRowsInto), reading the photo
// in strips so that no canvas as large as the square is ever made. The page's model and the server (which
// gets this canvas as PNG) then see the same pixels as `hypoderm predict` on the square.

import { reduceFactor, reduceRowsInto } from "./preprocess.js";

// Pixels read from the photo at a time (8 MB of RGBA): phones cap a canvas's area (iOS at 16.7 MP) and memory.
const STRIP_PIXELS = 1 << 21;

export class Cropper {
  constructor(canvas, slider) {
    this.canvas = canvas;
    this.slider = slider;
    this.ctx = canvas.getContext("2d");
    this.bitmap = null;
    this.pointers = new Map();
    slider.addEventListener("input", () => this.setZoom(Number(slider.value)));
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const ev of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(ev, (e) => this.pointers.delete(e.pointerId));
    canvas.addEventListener("wheel", (e) => { e.preventDefault(); this.setZoom(this.zoom * (e.deltaY < 0 ? 1.1 : 1 / 1.1)); }, { passive: false });
  }

  /** Show a new photo: the largest centred square (Python's centre square: offsets rounded down), zoom 1. */
  load(bitmap) {
    this.bitmap = bitmap;
    this.side0 = Math.min(bitmap.width, bitmap.height);
    this.cx = Math.floor((bitmap.width - this.side0) / 2) + this.side0 / 2;
    this.cy = Math.floor((bitmap.height - this.side0) / 2) + this.side0 / 2;
    this.setZoom(1);
  }

  setZoom(z) {
    this.zoom = Math.min(8, Math.max(1, z));
    this.slider.value = String(this.zoom);
    this.clamp();
    this.draw();
  }

  /** The crop box in photo pixels, integer-aligned and inside the photo. */
  box() {
    const side = Math.max(1, Math.round(this.side0 / this.zoom));
    const x = Math.min(this.bitmap.width - side, Math.max(0, Math.round(this.cx - side / 2)));
    const y = Math.min(this.bitmap.height - side, Math.max(0, Math.round(this.cy - side / 2)));
    return { x, y, side };
  }

  clamp() {
    const half = this.side0 / this.zoom / 2;
    this.cx = Math.min(this.bitmap.width - half, Math.max(half, this.cx));
    this.cy = Math.min(this.bitmap.height - half, Math.max(half, this.cy));
  }

  draw() {
    const { x, y, side } = this.box();
    this.ctx.imageSmoothingQuality = "high";
    this.ctx.drawImage(this.bitmap, x, y, side, side, 0, 0, this.canvas.width, this.canvas.height);
  }

  down(e) {
    this.canvas.setPointerCapture(e.pointerId);
    this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
  }

  move(e) {
    const prev = this.pointers.get(e.pointerId);
    if (!prev || !this.bitmap) return;
    const now = { x: e.clientX, y: e.clientY };
    const perCss = this.side0 / this.zoom / this.canvas.clientWidth; // photo pixels per CSS pixel
    if (this.pointers.size === 1) {
      this.cx -= (now.x - prev.x) * perCss;
      this.cy -= (now.y - prev.y) * perCss;
      this.pointers.set(e.pointerId, now);
      this.clamp();
      this.draw();
    } else if (this.pointers.size === 2) {
      const other = [...this.pointers.entries()].find(([id]) => id !== e.pointerId)[1];
      const before = Math.hypot(prev.x - other.x, prev.y - other.y);
      const after = Math.hypot(now.x - other.x, now.y - other.y);
      this.pointers.set(e.pointerId, now);
      if (before > 0) this.setZoom(this.zoom * (after / before));
    }
  }

  /** The framed square as an opaque canvas (white under any transparency, like the server's loader), cut at
   * the photo's resolution and, when it is large, box-reduced by the rule's factor for the model's `input`
   * (hypoderm.inference.preprocess.reduce_factor); its side is then under 2 x (2 x input.resize_size). */
  cropCanvas(input) {
    const { x, y, side } = this.box();
    const factor = reduceFactor(side, input);
    const out = Math.ceil(side / factor);
    const c = document.createElement("canvas");
    c.width = c.height = out;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, out, out);
    if (factor === 1) { // 1:1 copy of the photo's pixels
      ctx.drawImage(this.bitmap, x, y, side, side, 0, 0, side, side);
      return c;
    }
    // Strips of whole boxes (a multiple of `factor` rows), each copied 1:1 and reduced into the output.
    const rows = factor * Math.max(1, Math.floor(STRIP_PIXELS / (side * factor)));
    const strip = document.createElement("canvas");
    strip.width = side;
    strip.height = Math.min(rows, side);
    const sctx = strip.getContext("2d", { willReadFrequently: true });
    const rgb = new Uint8ClampedArray(out * out * 3);
    for (let r0 = 0; r0 < side; r0 += rows) {
      const n = Math.min(rows, side - r0);
      sctx.fillStyle = "#fff";
      sctx.fillRect(0, 0, side, n);
      sctx.drawImage(this.bitmap, x, y + r0, side, n, 0, 0, side, n);
      reduceRowsInto(sctx.getImageData(0, 0, side, n).data, side, n, 4, factor, rgb, out, r0 / factor);
    }
    const img = ctx.createImageData(out, out);
    for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
      img.data[j] = rgb[i]; img.data[j + 1] = rgb[i + 1]; img.data[j + 2] = rgb[i + 2]; img.data[j + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }
}
