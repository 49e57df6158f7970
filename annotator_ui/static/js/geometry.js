// Mask geometry for drawing and hit tests, built from column runs (no per-pixel work).
//
// Frame: full-resolution image pixels, x right, y down; a pixel (x, y) covers the square
// [x, x+1) x [y, y+1). COCO RLE runs go down columns, so a mask is kept as its foreground
// runs per column of its bounding box:
//   geo = {x0, y0, w, h,                  // bbox (integers), h/w may be 0
//          colStart: Int32Array(w + 1),   // runs of column x0+i: runs[2*colStart[i] .. 2*colStart[i+1])
//          runs: Int32Array(2 * n),       // [ys, ye) pairs, full-res rows, sorted per column
//          rects: Int32Array(4 * k),      // fill: [x, y, w, h] rectangles (columns with equal runs merged)
//          segs: Int32Array(4 * m)}       // outline: [xa, ya, xb, yb] axis-aligned pixel-edge segments
// Everything is a typed array, so a worker can hand a geo over without copying.
// Drawing builds Path2D objects from rects / segs once (see render.js) and strokes them
// under the view transform, so outlines stay one screen pixel wide at every zoom.

// Column runs of a COCO RLE (counts as numbers) inside its bbox -> {colStart, runs}.
function runsFromCounts(cnts, H, x0, w) {
  const perCol = Array.from({ length: w }, () => []);
  let p = 0;
  for (let i = 0; i < cnts.length; i++) {
    let n = cnts[i];
    if (i % 2 === 1) {
      while (n > 0) { // a run may wrap from the bottom of one column to the top of the next
        const x = Math.floor(p / H), y = p % H;
        const run = Math.min(n, H - y);
        const cx = x - x0;
        if (cx >= 0 && cx < w) {
          const col = perCol[cx];
          if (col.length && col[col.length - 1] === y) col[col.length - 1] = y + run; // touching
          else col.push(y, y + run);
        }
        p += run; n -= run;
      }
    } else {
      p += n;
    }
  }
  return packColumns(perCol);
}

function packColumns(perCol) {
  const colStart = new Int32Array(perCol.length + 1);
  let total = 0;
  for (let i = 0; i < perCol.length; i++) { colStart[i] = total; total += perCol[i].length / 2; }
  colStart[perCol.length] = total;
  const runs = new Int32Array(2 * total);
  let k = 0;
  for (const col of perCol) for (const v of col) runs[k++] = v;
  return { colStart, runs };
}

// Fill rectangles: one per run, merged across neighbouring columns holding the same run.
function rectsOf(x0, w, colStart, runs) {
  const out = [];
  let open = new Map(); // "ys,ye" -> index into out of the rect still growing to the right
  for (let i = 0; i <= w; i++) {
    const next = new Map();
    if (i < w) {
      for (let r = colStart[i]; r < colStart[i + 1]; r++) {
        const ys = runs[2 * r], ye = runs[2 * r + 1], key = ys * 1e6 + ye;
        const at = open.get(key);
        if (at !== undefined) { out[at + 2] += 1; next.set(key, at); }
        else { next.set(key, out.length); out.push(x0 + i, ys, 1, ye - ys); }
      }
    }
    open = next;
  }
  return Int32Array.from(out);
}

// Outline: horizontal edges at each run's top and bottom (merged along x), vertical edges
// where the coverage of neighbouring columns differs (symmetric difference of their runs).
function segsOf(x0, w, colStart, runs) {
  const out = [];
  let openH = new Map(); // y -> index of a horizontal segment still growing to the right
  for (let i = 0; i <= w; i++) {
    const nextH = new Map();
    if (i < w) {
      for (let r = colStart[i]; r < colStart[i + 1]; r++) {
        for (const y of [runs[2 * r], runs[2 * r + 1]]) {
          const at = openH.get(y);
          if (at !== undefined) { out[at + 2] += 1; nextH.set(y, at); }
          else { nextH.set(y, out.length); out.push(x0 + i, y, x0 + i + 1, y); }
        }
      }
    }
    openH = nextH;
    // vertical edges on the line x = x0 + i, between column i-1 and column i
    const pts = [];
    if (i > 0) for (let r = colStart[i - 1]; r < colStart[i]; r++) pts.push(runs[2 * r], runs[2 * r + 1]);
    if (i < w) for (let r = colStart[i]; r < colStart[i + 1]; r++) pts.push(runs[2 * r], runs[2 * r + 1]);
    if (!pts.length) continue;
    pts.sort((a, b) => a - b);
    const xs = [];
    for (let k = 0; k < pts.length; k++) { // equal toggle points cancel
      if (k + 1 < pts.length && pts[k] === pts[k + 1]) { k++; continue; }
      xs.push(pts[k]);
    }
    for (let k = 0; k + 1 < xs.length; k += 2) out.push(x0 + i, xs[k], x0 + i, xs[k + 1]);
  }
  return Int32Array.from(out);
}

function finish(x0, y0, w, h, colStart, runs) {
  return { x0, y0, w, h, colStart, runs, rects: rectsOf(x0, w, colStart, runs), segs: segsOf(x0, w, colStart, runs) };
}

// COCO RLE {size: [H, W], counts: number[]} + XYWH bbox -> geo (counts already decoded;
// rle.js countsFromString turns the compressed string form into numbers).
export function geoFromCounts(cnts, H, bbox) {
  const x0 = Math.floor(bbox[0]), y0 = Math.floor(bbox[1]);
  const w = Math.max(0, Math.round(bbox[2])), h = Math.max(0, Math.round(bbox[3]));
  const { colStart, runs } = runsFromCounts(cnts, H, x0, w);
  return finish(x0, y0, w, h, colStart, runs);
}

// A bit crop {x0, y0, w, h, bits (row-major Uint8Array)} -> geo (one pass over the crop).
export function geoFromCrop(crop) {
  const { x0, y0, w, h, bits } = crop;
  const perCol = Array.from({ length: w }, () => []);
  for (let cx = 0; cx < w; cx++) {
    const col = perCol[cx];
    let start = -1;
    for (let cy = 0; cy < h; cy++) {
      const on = bits[cy * w + cx] === 1;
      if (on && start < 0) start = cy;
      else if (!on && start >= 0) { col.push(y0 + start, y0 + cy); start = -1; }
    }
    if (start >= 0) col.push(y0 + start, y0 + h);
  }
  const { colStart, runs } = packColumns(perCol);
  return finish(x0, y0, w, h, colStart, runs);
}

// Is full-res point (x, y) inside the mask? O(runs of one column).
export function geoHas(geo, x, y) {
  const cx = Math.floor(x) - geo.x0, py = Math.floor(y);
  if (cx < 0 || cx >= geo.w) return false;
  for (let r = geo.colStart[cx]; r < geo.colStart[cx + 1]; r++) {
    if (py >= geo.runs[2 * r] && py < geo.runs[2 * r + 1]) return true;
  }
  return false;
}

// Number of mask pixels (sum of the run lengths).
export function geoArea(geo) {
  let n = 0;
  for (let r = 0; r < geo.runs.length; r += 2) n += geo.runs[r + 1] - geo.runs[r];
  return n;
}

// The typed arrays of a geo, for postMessage's transfer list.
export const geoBuffers = (geo) => [geo.colStart.buffer, geo.runs.buffer, geo.rects.buffer, geo.segs.buffer];

// geo -> bit crop {x0, y0, w, h, bits} (rle.js's frame), for brushing a stored mask.
export function cropFromGeo(geo) {
  const { x0, y0, w, h, colStart, runs } = geo;
  const bits = new Uint8Array(w * h);
  for (let cx = 0; cx < w; cx++) {
    for (let r = colStart[cx]; r < colStart[cx + 1]; r++) {
      for (let y = runs[2 * r]; y < runs[2 * r + 1]; y++) bits[(y - y0) * w + cx] = 1;
    }
  }
  return { x0, y0, w, h, bits };
}
