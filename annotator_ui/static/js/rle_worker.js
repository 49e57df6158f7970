// Off-main-thread decoding of mask RLEs into drawing geometry (geometry.js).
// Message in:  {job, masks: [{id, rle: {size: [H, W], counts}, bbox: XYWH}]}
// Message out: {job, geos: [{id, geo}], ms} with the geos' typed arrays transferred,
//              or {job, error} naming the mask that could not be decoded.
// Started as a module worker by maskstore.js; one bad mask fails only itself.

import { geoBuffers, geoFromCounts } from "./geometry.js";
import { countsFromString } from "./rle.js";

self.onmessage = (e) => {
  const { job, masks } = e.data;
  const t0 = performance.now();
  const geos = [], errors = [], transfer = [];
  for (const m of masks) {
    try {
      const cnts = typeof m.rle.counts === "string" ? countsFromString(m.rle.counts) : m.rle.counts;
      const geo = geoFromCounts(cnts, m.rle.size[0], m.bbox);
      geos.push({ id: m.id, geo });
      transfer.push(...geoBuffers(geo));
    } catch (err) {
      errors.push({ id: m.id, error: String(err && err.message ? err.message : err) });
    }
  }
  self.postMessage({ job, geos, errors, ms: performance.now() - t0 }, transfer);
};
