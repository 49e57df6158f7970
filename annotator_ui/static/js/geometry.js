// Mask geometry for drawing and hit tests, built from column runs (no per-pixel work).
//
// Frame: full-resolution image pixels, x right, y down; a pixel (x, y) covers the square
// [x, x+1) x [y, y+1). COCO RLE runs go down columns, so a mask is kept as its foreground
// runs per column of its bounding box:
//   geo = {x0, y0, w, h,                  // bbox (integers), h/w may be 0
//          colStart: Int32Array(w + 1),   // runs of column x0+i: runs[2*colStart[i] .. 2*colStart[i+1])
//          runs: Int32Array(2 * n),       // [ys, ye) pairs, full-res rows, sorted per column
//          loops: Int32Array(2 * p),      // the boundary as closed polylines of pixel-edge vertices
//          loopStart: Int32Array(q + 1)}  // points of loop j: loops[2*loopStart[j] .. 2*loopStart[j+1])
// Loops hold only corner vertices (collinear ones dropped); holes are loops too, so the
// even-odd fill of all loops is the mask. Everything is a typed array, so a worker can hand
// a geo over without copying. Drawing (render.js) simplifies the loops to the zoom level
// (simplify below), builds one Path2D per level and fills / strokes it under the view
// transform, so outlines stay one screen pixel wide at every zoom.

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

// The boundary's edges: a horizontal unit edge at each run's top and bottom in each column,
// and vertical edges where neighbouring columns differ (symmetric difference of their run
// end points, which splits them wherever a horizontal edge meets them). Then chained into
// closed loops; at a vertex where two loops touch (a checkerboard corner) either pairing
// is right for the even-odd fill.
function loopsOf(x0, w, colStart, runs) {
  const ex = []; // edges: xa, ya, xb, yb
  for (let i = 0; i <= w; i++) {
    if (i < w) {
      for (let r = colStart[i]; r < colStart[i + 1]; r++) {
        ex.push(x0 + i, runs[2 * r], x0 + i + 1, runs[2 * r]);
        ex.push(x0 + i, runs[2 * r + 1], x0 + i + 1, runs[2 * r + 1]);
      }
    }
    const pts = [];
    if (i > 0) for (let r = colStart[i - 1]; r < colStart[i]; r++) pts.push(runs[2 * r], runs[2 * r + 1]);
    if (i < w) for (let r = colStart[i]; r < colStart[i + 1]; r++) pts.push(runs[2 * r], runs[2 * r + 1]);
    if (!pts.length) continue;
    pts.sort((a, b) => a - b);
    const ys = [];
    for (let k = 0; k < pts.length; k++) { // equal toggle points cancel
      if (k + 1 < pts.length && pts[k] === pts[k + 1]) { k++; continue; }
      ys.push(pts[k]);
    }
    for (let k = 0; k + 1 < ys.length; k += 2) ex.push(x0 + i, ys[k], x0 + i, ys[k + 1]);
  }
  const n = ex.length / 4;
  const key = (x, y) => x * 131072 + y;
  const at = new Map(); // vertex -> edge indices touching it
  const add = (k, e) => { const l = at.get(k); if (l === undefined) at.set(k, e); else if (typeof l === "number") at.set(k, [l, e]); else l.push(e); };
  for (let e = 0; e < n; e++) { // one number per vertex (degree 2 mostly), a list at touching corners
    add(key(ex[4 * e], ex[4 * e + 1]), e);
    add(key(ex[4 * e + 2], ex[4 * e + 3]), e);
  }
  const used = new Uint8Array(n);
  const out = [], starts = [0];
  for (let e0 = 0; e0 < n; e0++) {
    if (used[e0]) continue;
    const pts = [ex[4 * e0], ex[4 * e0 + 1]];
    let cx = ex[4 * e0 + 2], cy = ex[4 * e0 + 3];
    used[e0] = 1;
    for (;;) {
      const list = at.get(key(cx, cy));
      let next = -1;
      if (typeof list === "number") { if (!used[list]) next = list; } else for (const e of list) if (!used[e]) { next = e; break; }
      pts.push(cx, cy);
      if (next < 0) break; // back at the start
      used[next] = 1;
      const fwd = ex[4 * next] === cx && ex[4 * next + 1] === cy;
      cx = fwd ? ex[4 * next + 2] : ex[4 * next]; cy = fwd ? ex[4 * next + 3] : ex[4 * next + 1];
    }
    // keep corners only: drop a vertex on the line through its neighbours
    const m = pts.length / 2 - 1; // last point repeats the first
    const keep = [];
    for (let k = 0; k < m; k++) {
      const p = (k + m - 1) % m, q = (k + 1) % m;
      const ax = pts[2 * k] - pts[2 * p], ay = pts[2 * k + 1] - pts[2 * p + 1];
      const bx = pts[2 * q] - pts[2 * k], by = pts[2 * q + 1] - pts[2 * k + 1];
      if (ax * by - ay * bx !== 0) keep.push(pts[2 * k], pts[2 * k + 1]);
    }
    if (keep.length < 6) continue;
    for (const v of keep) out.push(v);
    starts.push(out.length / 2);
  }
  return { loops: Int32Array.from(out), loopStart: Int32Array.from(starts) };
}

function finish(x0, y0, w, h, colStart, runs) {
  return { x0, y0, w, h, colStart, runs, ...loopsOf(x0, w, colStart, runs) };
}

// The loops simplified for drawing at tolerance tol (full-res px; Douglas-Peucker, each
// loop split at its first point and the point farthest from it): [Float32Array of x, y].
export function simplify(geo, tol) {
  const out = [];
  const { loops, loopStart } = geo;
  const t2 = tol * tol;
  for (let j = 0; j + 1 < loopStart.length; j++) {
    const a = loopStart[j], n = loopStart[j + 1] - a;
    if (tol <= 0 || n <= 8) { out.push(Float32Array.from(loops.subarray(2 * a, 2 * (a + n)))); continue; }
    const X = (i) => loops[2 * (a + (i % n))], Y = (i) => loops[2 * (a + (i % n)) + 1];
    let far = 0, best = -1;
    for (let i = 1; i < n; i++) { const d = (X(i) - X(0)) ** 2 + (Y(i) - Y(0)) ** 2; if (d > best) { best = d; far = i; } }
    const keep = new Uint8Array(n + 1);
    keep[0] = keep[far] = keep[n] = 1;
    const stack = [[0, far], [far, n]];
    while (stack.length) {
      const [i0, i1] = stack.pop();
      if (i1 - i0 < 2) continue;
      const ax = X(i0), ay = Y(i0), dx = X(i1) - ax, dy = Y(i1) - ay, L = dx * dx + dy * dy;
      let worst = -1, wi = -1;
      for (let i = i0 + 1; i < i1; i++) {
        const px = X(i) - ax, py = Y(i) - ay;
        const c = L ? (px * dy - py * dx) ** 2 / L : px * px + py * py;
        if (c > worst) { worst = c; wi = i; }
      }
      if (worst > t2) { keep[wi] = 1; stack.push([i0, wi], [wi, i1]); }
    }
    const pts = [];
    for (let i = 0; i < n; i++) if (keep[i]) pts.push(X(i), Y(i));
    out.push(Float32Array.from(pts));
  }
  return out;
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
export const geoBuffers = (geo) => [geo.colStart.buffer, geo.runs.buffer, geo.loops.buffer, geo.loopStart.buffer];

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
