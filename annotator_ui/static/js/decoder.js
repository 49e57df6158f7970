// A small pool of module workers (rle_worker.js) turning mask RLEs into geometry
// (geometry.js) off the main thread, so a 4000 px photo with dozens of masks opens
// without freezing the page. Falls back to the main thread where workers are unavailable.
// One pool serves the page (sharedDecoder): the next image reuses the started workers.

import { geoFromCounts } from "./geometry.js";
import { countsFromString } from "./rle.js";

const WORKER_URL = new URL("./rle_worker.js", import.meta.url);

export class MaskDecoder {
  // size: number of workers (default: up to 2, the cores of a small laptop)
  constructor(size = Math.max(1, Math.min(2, (navigator.hardwareConcurrency || 2)))) {
    this.jobs = new Map();
    this.seq = 0;
    this.workers = [];
    try {
      for (let i = 0; i < size; i++) {
        const w = new Worker(WORKER_URL, { type: "module" });
        w.onmessage = (e) => this.done(e.data);
        w.onerror = (e) => this.fail(e);
        this.workers.push(w);
      }
    } catch (err) {
      console.warn("mask workers unavailable, decoding on the main thread", err);
      this.workers = [];
    }
  }

  // masks: [{id, rle, bbox}] -> Promise<{geos: Map(id -> geo), errors: [{id, error}], ms}>
  async decode(masks) {
    if (!masks.length) return { geos: new Map(), errors: [], ms: 0 };
    const answers = this.workers.length ? await this.spread(masks) : [this.decodeHere(masks)];
    const geos = new Map(), errors = [];
    let ms = 0;
    for (const a of answers) {
      if (!a) continue;
      for (const { id, geo } of a.geos) geos.set(id, geo);
      errors.push(...a.errors);
      ms = Math.max(ms, a.ms);
    }
    return { geos, errors, ms };
  }

  spread(masks) {
    // split by area so the workers finish together
    const parts = this.workers.map(() => ({ masks: [], area: 0 }));
    for (const m of [...masks].sort((a, b) => b.area - a.area)) {
      const p = parts.reduce((a, b) => (b.area < a.area ? b : a));
      p.masks.push({ id: m.id, rle: m.rle, bbox: m.bbox }); p.area += m.area || 1;
    }
    return Promise.all(parts.map((p, i) => (p.masks.length ? this.send(i, p.masks) : null)));
  }

  send(i, masks) {
    const job = ++this.seq;
    return new Promise((resolve, reject) => {
      this.jobs.set(job, { resolve, reject, masks });
      this.workers[i].postMessage({ job, masks });
    });
  }

  done(msg) {
    const j = this.jobs.get(msg.job);
    if (!j) return;
    this.jobs.delete(msg.job);
    j.resolve(msg);
  }

  fail(e) { // a worker that cannot start: finish its jobs here, stop using workers
    console.warn("mask worker failed, decoding on the main thread", e.message || e);
    e.preventDefault?.();
    this.destroy();
    for (const [job, j] of this.jobs) { this.jobs.delete(job); j.resolve(this.decodeHere(j.masks)); }
  }

  decodeHere(masks) {
    const t0 = performance.now();
    const geos = [], errors = [];
    for (const m of masks) {
      try {
        const cnts = typeof m.rle.counts === "string" ? countsFromString(m.rle.counts) : m.rle.counts;
        geos.push({ id: m.id, geo: geoFromCounts(cnts, m.rle.size[0], m.bbox) });
      } catch (err) {
        errors.push({ id: m.id, error: String(err.message || err) });
      }
    }
    return { geos, errors, ms: performance.now() - t0 };
  }

  destroy() {
    for (const w of this.workers) w.terminate();
    this.workers = [];
  }
}

let shared = null;

// The page's pool, started on first use and kept across images (a worker's start-up, its
// module fetch and compile, is then paid once per page, not once per image).
export function sharedDecoder() {
  if (!shared) shared = new MaskDecoder();
  return shared;
}
