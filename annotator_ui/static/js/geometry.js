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
// Two passes over the counts (count the runs per column, then fill), typed arrays only.
function runsFromCounts(cnts, H, x0, w) {
  const perCol = new Int32Array(w + 1), lastEnd = new Int32Array(w).fill(-1);
  const visit = (fill) => {
    let p = 0;
    for (let i = 0; i < cnts.length; i++) {
      let n = cnts[i];
      if (i % 2 === 0) { p += n; continue; }
      while (n > 0) { // a run may wrap from the bottom of one column to the top of the next
        const x = Math.floor(p / H), y = p - x * H;
        const run = Math.min(n, H - y);
        const cx = x - x0;
        if (cx >= 0 && cx < w) fill(cx, y, y + run);
        p += run; n -= run;
      }
    }
  };
  visit((cx, y0, y1) => { if (lastEnd[cx] !== y0) perCol[cx]++; lastEnd[cx] = y1; });
  const colStart = new Int32Array(w + 1);
  for (let i = 0; i < w; i++) colStart[i + 1] = colStart[i] + perCol[i];
  const runs = new Int32Array(2 * colStart[w]);
  const at = colStart.slice(0, w);
  lastEnd.fill(-1);
  visit((cx, y0, y1) => {
    if (lastEnd[cx] === y0) runs[2 * at[cx] - 1] = y1; // touching the previous run: extend it
    else { runs[2 * at[cx]] = y0; runs[2 * at[cx] + 1] = y1; at[cx]++; }
    lastEnd[cx] = y1;
  });
  return { colStart, runs };
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

// Vertices of the boundary -> the (2, or 4 where two loops touch) edges meeting there:
// open addressing on (x, y) in typed arrays (a Map of numbers costs ten times more).
class VertexTable {
  constructor(nVertices) {
    let size = 16;
    while (size < 2 * nVertices) size *= 2;
    this.mask = size - 1;
    this.kx = new Int32Array(size).fill(-1);
    this.ky = new Int32Array(size);
    this.edges = new Int32Array(4 * size).fill(-1);
  }

  slot(x, y) { // the slot of vertex (x, y), claimed if new
    let h = (Math.imul(x, 0x9e3779b1) ^ Math.imul(y, 0x85ebca77)) & this.mask;
    for (;;) {
      const kx = this.kx[h];
      if (kx === -1) { this.kx[h] = x; this.ky[h] = y; return h; }
      if (kx === x && this.ky[h] === y) return h;
      h = (h + 1) & this.mask;
    }
  }

  add(x, y, e) {
    const o = 4 * this.slot(x, y), E = this.edges;
    if (E[o] < 0) E[o] = e; else if (E[o + 1] < 0) E[o + 1] = e; else if (E[o + 2] < 0) E[o + 2] = e; else E[o + 3] = e;
  }

  // an edge at (x, y) not used yet, or -1
  free(x, y, used) {
    const o = 4 * this.slot(x, y), E = this.edges;
    for (let k = o; k < o + 4; k++) if (E[k] >= 0 && !used[E[k]]) return E[k];
    return -1;
  }
}

// The boundary's edges: a horizontal unit edge at each run's top and bottom in each column,
// and vertical edges where neighbouring columns differ (symmetric difference of their run
// end points, which splits them wherever a horizontal edge meets them). Then chained into
// closed loops; at a vertex where two loops touch (a checkerboard corner) either pairing
// is right for the even-odd fill.
function loopsOf(x0, w, colStart, runs) {
  const nRuns = runs.length / 2;
  const ex = new Int32Array(4 * (4 * nRuns + 1)); // <= 2 horizontal + 2 vertical edges per run
  let n = 0;
  const edge = (xa, ya, xb, yb) => { const o = 4 * n++; ex[o] = xa; ex[o + 1] = ya; ex[o + 2] = xb; ex[o + 3] = yb; };
  for (let i = 0; i <= w; i++) {
    const x = x0 + i;
    if (i < w) {
      for (let r = colStart[i]; r < colStart[i + 1]; r++) {
        edge(x, runs[2 * r], x + 1, runs[2 * r]);
        edge(x, runs[2 * r + 1], x + 1, runs[2 * r + 1]);
      }
    }
    // merge the two columns' sorted end points; equal ones cancel (symmetric difference)
    let a = i > 0 ? 2 * colStart[i - 1] : 0;
    const aEnd = i > 0 ? 2 * colStart[i] : 0;
    let b = i < w ? 2 * colStart[i] : 0;
    const bEnd = i < w ? 2 * colStart[i + 1] : 0;
    let open = -1;
    while (a < aEnd || b < bEnd) {
      let y;
      if (b >= bEnd || (a < aEnd && runs[a] < runs[b])) y = runs[a++];
      else if (a >= aEnd || runs[b] < runs[a]) y = runs[b++];
      else { a++; b++; continue; }
      if (open < 0) open = y; else { edge(x, open, x, y); open = -1; }
    }
  }
  const table = new VertexTable(2 * n);
  for (let e = 0; e < n; e++) {
    table.add(ex[4 * e], ex[4 * e + 1], e);
    table.add(ex[4 * e + 2], ex[4 * e + 3], e);
  }
  const used = new Uint8Array(n);
  const pts = new Int32Array(2 * (n + 1));
  const out = new Int32Array(2 * n);
  const starts = [0];
  let nOut = 0;
  for (let e0 = 0; e0 < n; e0++) {
    if (used[e0]) continue;
    pts[0] = ex[4 * e0]; pts[1] = ex[4 * e0 + 1];
    let np = 1;
    let cx = ex[4 * e0 + 2], cy = ex[4 * e0 + 3];
    used[e0] = 1;
    for (;;) {
      const next = table.free(cx, cy, used);
      pts[2 * np] = cx; pts[2 * np + 1] = cy; np++;
      if (next < 0) break; // back at the start
      used[next] = 1;
      const o = 4 * next;
      const fwd = ex[o] === cx && ex[o + 1] === cy;
      cx = fwd ? ex[o + 2] : ex[o]; cy = fwd ? ex[o + 3] : ex[o + 1];
    }
    // keep corners only: drop a vertex on the line through its neighbours
    const m = np - 1; // last point repeats the first
    const from = nOut;
    for (let k = 0; k < m; k++) {
      const p = (k + m - 1) % m, q = (k + 1) % m;
      const ax = pts[2 * k] - pts[2 * p], ay = pts[2 * k + 1] - pts[2 * p + 1];
      const bx = pts[2 * q] - pts[2 * k], by = pts[2 * q + 1] - pts[2 * k + 1];
      if (ax * by - ay * bx !== 0) { out[2 * nOut] = pts[2 * k]; out[2 * nOut + 1] = pts[2 * k + 1]; nOut++; }
    }
    if (nOut - from < 3) { nOut = from; continue; }
    starts.push(nOut);
  }
  return { loops: out.slice(0, 2 * nOut), loopStart: Int32Array.from(starts) };
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
