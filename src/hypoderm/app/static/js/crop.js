// Square crop with pan and zoom (drag, pinch, wheel, slider). The crop is cut at the photo's own
// resolution (integer pixel box, no resampling) up to MAX_SIDE, so the browser and the server
// see exactly the same pixels.

const MAX_SIDE = 1024;

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

  /** Show a new photo: the largest centred square, zoom 1. */
  load(bitmap) {
    this.bitmap = bitmap;
    this.side0 = Math.min(bitmap.width, bitmap.height);
    this.cx = bitmap.width / 2;
    this.cy = bitmap.height / 2;
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

  /** The framed square as an opaque canvas (white under any transparency, like the server's loader). */
  cropCanvas() {
    const { x, y, side } = this.box();
    const out = Math.min(side, MAX_SIDE);
    const c = document.createElement("canvas");
    c.width = c.height = out;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, out, out);
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(this.bitmap, x, y, side, side, 0, 0, out, out);
    return c;
  }
}
