// Drawing of the review canvas in two layers:
// - the base layer (photo + every visible mask), re-drawn only when the view, a mask or a
//   display setting changes, into a screen-size offscreen canvas;
// - the live layer on top, each frame: selection, hover, the next target, badges, the
//   object being drawn (with the brush strokes of the current drag), the box being dragged
//   and the brush cursor.
// Masks are Path2D objects in full-resolution coordinates (geometry.js loops, simplified
// per zoom level and cached per mask) filled and stroked under the view transform, with line widths divided by
// the scale: outlines are crisp screen pixels at every zoom. Masks off screen are skipped.

import { simplify } from "./geometry.js";

export const STYLE = {
  outline: 1.5, // screen px
  selected: 3,
  dash: [6, 4], // less confident proposals: dashed
  acceptedFill: 0.6, // accepted masks' fill relative to proposals (the slider sets proposals)
};

// One Path2D per mask and level of detail: below 1:1 the loops simplified to within one
// or two screen pixels (tolerance buckets by powers of two: the staircase of pixel edges would
// cost a hundred times more to stroke and is not visible there); exact from 1:1 on.
// Fill even-odd.
function pathOf(entry, s) {
  const tol = s >= 1 ? 0 : 2 ** Math.ceil(Math.log2(1 / s));
  if (!entry.paths || entry.paths.geo !== entry.geo) entry.paths = { geo: entry.geo };
  let p = entry.paths[tol];
  if (!p) {
    p = new Path2D();
    for (const loop of simplify(entry.geo, tol)) {
      p.moveTo(loop[0], loop[1]);
      for (let i = 2; i < loop.length; i += 2) p.lineTo(loop[i], loop[i + 1]);
      p.closePath();
    }
    entry.paths[tol] = p;
  }
  return p;
}

const rgba = (rgb, a) => `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${a})`;

// Is the mask a proposal the confident rule hid (shown after "less confident")?
export const lessConfident = (m) => m.data.status === "proposed" && !m.data.confident;

function strokeMask(g, v, entry, width, colour, dashed) {
  g.lineWidth = width / v.s;
  g.setLineDash(dashed ? STYLE.dash.map((d) => d / v.s) : []);
  g.strokeStyle = colour;
  g.stroke(pathOf(entry, v.s));
}

export class Renderer {
  constructor(canvas) {
    this.canvas = canvas;
    this.g = canvas.getContext("2d");
    this.base = document.createElement("canvas");
    this.bg = this.base.getContext("2d");
    this.baseKey = null;
    this.draftLayer = document.createElement("canvas");
    this.dg = this.draftLayer.getContext("2d");
  }

  invalidate() { this.baseKey = null; }

  // The photo and its reductions: [[image, factor]] with factor 1 first, e.g. the photo
  // and its quarter (decoded straight from the file at that size, see review.js load):
  // drawing a 4000 px photo at 0.27x from its quarter is far cheaper.
  setLevels(bitmap, reduced) {
    this.levelsOf = bitmap;
    this.levels = [[bitmap, 1], ...reduced.filter(([b]) => b)];
  }

  // The photo at the coarsest prepared reduction still at least as fine as the screen.
  level(bitmap, s) {
    if (this.levelsOf !== bitmap) return bitmap;
    let best = bitmap;
    for (const [b, f] of this.levels) if (f >= s) best = b; // coarser ones come later
    return best;
  }

  // r: the Review (view, bitmap, masks, display settings); see review.js
  drawBase(r) {
    const v = r.view, c = this.canvas, g = this.bg;
    if (this.base.width !== c.width || this.base.height !== c.height) {
      this.base.width = c.width; this.base.height = c.height;
    }
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, c.width, c.height);
    v.apply(g);
    g.imageSmoothingEnabled = v.s < 2; // pixels stay square when zoomed far in
    g.drawImage(this.level(r.bitmap, v.s), 0, 0, r.W, r.H);
    this.drawn = 0;
    if (!r.hideAll) {
      const fixing = r.draft && r.draft.fixOf;
      const masks = r.shownMasks().filter((m) => m.data.id !== fixing && m.geo.w && v.sees(m.geo.x0, m.geo.y0, m.geo.w, m.geo.h));
      const alpha = r.outlineOnly ? 0 : r.opacity;
      if (alpha > 0) {
        for (const m of masks) {
          const a = m.data.status === "accepted" ? alpha * STYLE.acceptedFill : alpha;
          g.fillStyle = rgba(m.rgb, a.toFixed(3));
          g.fill(pathOf(m, v.s), "evenodd");
        }
      }
      for (const m of masks) {
        strokeMask(g, v, m, STYLE.outline + 1.5, "rgba(0,0,0,0.55)", lessConfident(m));
        strokeMask(g, v, m, STYLE.outline, rgba(m.rgb, 1), lessConfident(m));
      }
      this.drawn = masks.length;
    }
    g.setLineDash([]);
    g.setTransform(1, 0, 0, 1, 0, 0);
  }

  // Everything: the base layer when stale (key: what it depends on), then the live layer.
  draw(r) {
    const v = r.view;
    const key = [v.s, v.ox, v.oy, this.canvas.width, this.canvas.height, r.maskRev, r.opacity, r.outlineOnly, r.hideAll, r.draft && r.draft.fixOf].join();
    if (key !== this.baseKey) { this.drawBase(r); this.baseKey = key; }
    const g = this.g;
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, this.canvas.width, this.canvas.height);
    g.drawImage(this.base, 0, 0);
    if (!r.hideAll) this.drawMarks(r);
    if (r.draft) this.drawDraft(r);
    this.drawTools(r);
  }

  drawMarks(r) {
    const g = this.g, v = r.view;
    const get = (id) => (id != null ? r.masks.get(id) : null);
    const sel = get(r.selected), hov = get(r.hover), next = get(r.nextTarget);
    v.apply(g);
    if (next && next !== sel && r.isShown(next)) strokeMask(g, v, next, 2, "#fff", true);
    if (hov && hov !== sel && r.isShown(hov)) strokeMask(g, v, hov, 2.5, rgba(hov.rgb, 1), false);
    if (sel && r.isShown(sel)) {
      strokeMask(g, v, sel, STYLE.selected + 2, "#000", false);
      strokeMask(g, v, sel, STYLE.selected, "#fff", lessConfident(sel));
    }
    g.setLineDash([]);
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.font = "12px system-ui, sans-serif";
    this.badges = 0;
    for (const [m, tag] of [[next, "next"], [hov, ""], [sel, "selected"]]) {
      if (!m || !r.isShown(m) || (tag === "next" && m === sel)) continue;
      this.badge(m, tag, v);
    }
  }

  // Label and confidence, only for the hovered, selected and next masks (never piled up).
  badge(m, tag, v) {
    const g = this.g, d = m.data;
    const conf = d.status === "proposed" && d.confidence != null ? `${Math.round(d.confidence * 100)}%` : "";
    const text = [tag === "next" ? "next" : "", d.label || "", conf, lessConfident(m) ? "less confident" : ""].filter(Boolean).join(" · ");
    if (!text) return;
    this.badges++;
    const [x, y] = v.toScreen(m.geo.x0, m.geo.y0);
    const tw = g.measureText(text).width + 8;
    const bx = Math.min(Math.max(0, x), this.canvas.width - tw), by = Math.min(Math.max(0, y - 17), this.canvas.height - 16);
    g.fillStyle = "rgba(0,0,0,0.8)"; g.fillRect(bx, by, tw, 16);
    g.fillStyle = "#fff"; g.fillText(text, bx + 4, by + 12);
  }

  // The object being drawn: its preview mask plus the brush dabs of the current drag,
  // composed on their own layer (erasing must not punch through the photo).
  drawDraft(r) {
    const d = r.draft, v = r.view, g = this.dg, c = this.canvas;
    if (this.draftLayer.width !== c.width || this.draftLayer.height !== c.height) {
      this.draftLayer.width = c.width; this.draftLayer.height = c.height;
    }
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, c.width, c.height);
    v.apply(g);
    if (d.geo && d.geo.w) {
      const p = pathOf(d, v.s);
      g.fillStyle = "rgba(255,255,255,0.45)"; g.fill(p, "evenodd");
      g.lineWidth = 2 / v.s; g.strokeStyle = "#fff"; g.stroke(p);
    }
    for (const [x, y, rad, val] of d.dabs || []) {
      g.globalCompositeOperation = val ? "source-over" : "destination-out";
      g.fillStyle = val ? "rgba(255,255,255,0.45)" : "#000";
      g.beginPath(); g.arc(x, y, rad, 0, 2 * Math.PI); g.fill();
    }
    g.globalCompositeOperation = "source-over";
    g.setTransform(1, 0, 0, 1, 0, 0);
    const m = this.g;
    m.drawImage(this.draftLayer, 0, 0);
    for (const [x, y, l] of d.points) {
      const [sx, sy] = v.toScreen(x, y);
      m.fillStyle = l ? "#2e2" : "#e22"; m.strokeStyle = "#000"; m.lineWidth = 1.5;
      m.beginPath(); m.arc(sx, sy, 5, 0, 2 * Math.PI); m.fill(); m.stroke();
    }
    if (d.box) {
      const [x0, y0] = v.toScreen(d.box[0], d.box[1]), [x1, y1] = v.toScreen(d.box[2], d.box[3]);
      m.strokeStyle = "#2e2"; m.lineWidth = 2; m.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
  }

  drawTools(r) {
    const g = this.g, v = r.view;
    if (r.drag && r.drag.box) {
      const [a, b] = [v.toScreen(...r.drag.start), v.toScreen(...r.drag.end)];
      g.strokeStyle = "#ff0"; g.lineWidth = 1;
      g.strokeRect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]));
    }
    if (r.tool !== "prompt" && r.cursor) {
      const [sx, sy] = v.toScreen(...r.cursor);
      g.strokeStyle = r.tool === "brush" ? "#fff" : "#f66"; g.lineWidth = 1;
      g.beginPath(); g.arc(sx, sy, r.brushPx, 0, 2 * Math.PI); g.stroke();
    }
  }
}
