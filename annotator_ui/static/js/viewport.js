// Zoom and pan of the review canvas, and the minimap of large photos.
//
// Frames: "full" = full-resolution image pixels (x right, y down; the masks' frame);
// "screen" = canvas pixels. screen = full * s + (ox, oy). The view is kept so that some of
// the image always stays on screen; zoom ranges from a quarter of "fit" to 16x (1:1 is
// s = 1, one image pixel per canvas pixel).

export const MAX_SCALE = 16;

export class Viewport {
  constructor() {
    this.W = 0; this.H = 0; this.cw = 1; this.ch = 1;
    this.s = 1; this.ox = 0; this.oy = 0;
    this.fitted = true; // follow window resizes while the person has not zoomed
  }

  // image size (full px) and canvas size (screen px)
  setImage(W, H) { this.W = W; this.H = H; this.fit(); }

  resize(cw, ch) {
    const cx = this.cw / 2, cy = this.ch / 2;
    const [fx, fy] = this.toFull(cx, cy);
    this.cw = Math.max(1, cw); this.ch = Math.max(1, ch);
    if (this.fitted) this.fit();
    else { this.ox = this.cw / 2 - fx * this.s; this.oy = this.ch / 2 - fy * this.s; this.clamp(); }
  }

  fitScale() { return this.W ? Math.min(this.cw / this.W, this.ch / this.H) : 1; }

  fit() {
    this.s = this.fitScale();
    this.ox = (this.cw - this.W * this.s) / 2;
    this.oy = (this.ch - this.H * this.s) / 2;
    this.fitted = true;
  }

  // Zoom to scale s keeping the full-res point under screen (sx, sy) where it is.
  zoomTo(s, sx = this.cw / 2, sy = this.ch / 2) {
    const lo = this.fitScale() / 4;
    s = Math.min(MAX_SCALE, Math.max(lo, s));
    const [fx, fy] = this.toFull(sx, sy);
    this.s = s;
    this.ox = sx - fx * s; this.oy = sy - fy * s;
    this.fitted = false;
    this.clamp();
  }

  zoomBy(factor, sx, sy) { this.zoomTo(this.s * factor, sx, sy); }

  // 1:1 at the screen point (default: the canvas centre)
  actualSize(sx, sy) { this.zoomTo(1, sx, sy); }

  panBy(dx, dy) { this.ox += dx; this.oy += dy; this.fitted = false; this.clamp(); }

  // Centre the view on full-res point (fx, fy) (the minimap's click).
  centreOn(fx, fy) {
    this.ox = this.cw / 2 - fx * this.s; this.oy = this.ch / 2 - fy * this.s;
    this.fitted = false; this.clamp();
  }

  // Keep at least a quarter of the canvas showing image (or centre a small image).
  clamp() {
    const iw = this.W * this.s, ih = this.H * this.s;
    const mx = Math.min(this.cw / 4, iw), my = Math.min(this.ch / 4, ih);
    this.ox = Math.min(Math.max(this.ox, mx - iw), this.cw - mx);
    this.oy = Math.min(Math.max(this.oy, my - ih), this.ch - my);
  }

  toFull(sx, sy) { return [(sx - this.ox) / this.s, (sy - this.oy) / this.s]; }

  toScreen(fx, fy) { return [this.ox + fx * this.s, this.oy + fy * this.s]; }

  // The full-res rectangle [x0, y0, x1, y1] on screen (clipped to the image).
  visibleRect() {
    const [x0, y0] = this.toFull(0, 0), [x1, y1] = this.toFull(this.cw, this.ch);
    return [Math.max(0, x0), Math.max(0, y0), Math.min(this.W, x1), Math.min(this.H, y1)];
  }

  // Does the full-res box [x, y, w, h] touch the screen?
  sees(x, y, w, h) {
    const [vx0, vy0, vx1, vy1] = this.visibleRect();
    return x < vx1 && y < vy1 && x + w > vx0 && y + h > vy0;
  }

  // Is the whole image on screen?
  whole() {
    return this.ox >= -0.5 && this.oy >= -0.5 && this.ox + this.W * this.s <= this.cw + 0.5 && this.oy + this.H * this.s <= this.ch + 0.5;
  }

  // The 2D transform taking full-res coordinates to the screen.
  apply(g) { g.setTransform(this.s, 0, 0, this.s, this.ox, this.oy); }
}

// A thumbnail of the photo with the visible part framed; shown while zoomed in on a photo
// larger than the canvas. A click or drag on it moves the view there.
export class Minimap {
  // canvas: the minimap's <canvas>; view: the Viewport; onMove(): redraw the main canvas
  constructor(canvas, view, onMove) {
    this.canvas = canvas; this.view = view; this.onMove = onMove;
    this.g = canvas.getContext("2d");
    this.thumb = null;
    const go = (e) => {
      const r = canvas.getBoundingClientRect();
      const k = this.view.W / canvas.width;
      this.view.centreOn((e.clientX - r.left) * (canvas.width / r.width) * k, (e.clientY - r.top) * (canvas.height / r.height) * k);
      this.onMove();
    };
    canvas.addEventListener("mousedown", (e) => { e.preventDefault(); e.stopPropagation(); this.dragging = true; go(e); });
    window.addEventListener("mousemove", (e) => { if (this.dragging) go(e); });
    window.addEventListener("mouseup", () => { this.dragging = false; });
  }

  // bitmap: the photo; the thumbnail is at most 180 px on its long side
  setImage(bitmap) {
    const k = 180 / Math.max(this.view.W, this.view.H);
    this.canvas.width = Math.max(1, Math.round(this.view.W * k));
    this.canvas.height = Math.max(1, Math.round(this.view.H * k));
    this.thumb = document.createElement("canvas");
    this.thumb.width = this.canvas.width; this.thumb.height = this.canvas.height;
    this.thumb.getContext("2d").drawImage(bitmap, 0, 0, this.thumb.width, this.thumb.height);
  }

  // Show it only while part of the photo is off screen.
  draw() {
    const show = this.thumb && !this.view.whole();
    this.canvas.hidden = !show;
    if (!show) return;
    const g = this.g, k = this.canvas.width / this.view.W;
    g.drawImage(this.thumb, 0, 0);
    const [x0, y0, x1, y1] = this.view.visibleRect();
    g.strokeStyle = "#ff0"; g.lineWidth = 2;
    g.strokeRect(x0 * k, y0 * k, Math.max(2, (x1 - x0) * k), Math.max(2, (y1 - y0) * k));
  }
}
