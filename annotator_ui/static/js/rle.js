// COCO RLE <-> full-resolution bit crops, in the browser.
//
// A "crop" is {x0, y0, w, h, bits}: bits is a Uint8Array(w*h), row-major, 1 = inside,
// covering the full-resolution image pixels [x0, x0+w) x [y0, y0+h). COCO RLE counts run
// down columns (Fortran order) over the whole image of size [H, W]; the compressed string
// form is pycocotools' (rleToString / rleFrString in maskApi.c).

export function countsFromString(s) {
  const cnts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1, c = 0;
    while (more) {
      c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (cnts.length > 2) x += cnts[cnts.length - 2];
    cnts.push(x);
  }
  return cnts;
}

export function countsToString(cnts) {
  let s = "";
  for (let i = 0; i < cnts.length; i++) {
    let x = cnts[i];
    if (i > 2) x -= cnts[i - 2];
    let more = 1;
    while (more) {
      let c = x & 0x1f;
      x >>= 5;
      more = (c & 0x10) ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
}

// RLE + its COCO XYWH bbox -> crop at full resolution (exact pixels).
export function decodeToCrop(rle, bbox) {
  const [H] = rle.size;
  const cnts = typeof rle.counts === "string" ? countsFromString(rle.counts) : rle.counts;
  const x0 = Math.floor(bbox[0]), y0 = Math.floor(bbox[1]);
  const w = Math.max(0, Math.round(bbox[2])), h = Math.max(0, Math.round(bbox[3]));
  const bits = new Uint8Array(w * h);
  let p = 0;
  for (let i = 0; i < cnts.length; i++) {
    let n = cnts[i];
    if (i % 2 === 1) {
      while (n > 0) {
        const x = Math.floor(p / H), y = p % H;
        const run = Math.min(n, H - y);
        const cx = x - x0;
        if (cx >= 0 && cx < w) {
          for (let yy = Math.max(y, y0); yy < Math.min(y + run, y0 + h); yy++) bits[(yy - y0) * w + cx] = 1;
        }
        p += run; n -= run;
      }
    } else {
      p += n;
    }
  }
  return { x0, y0, w, h, bits };
}

// crop -> COCO RLE {size: [H, W], counts: str} over the whole image.
export function encodeCrop(crop, H, W) {
  const cnts = [];
  let cur = 0, run = 0;
  const push = (v, n) => {
    if (n <= 0) return;
    if (v === cur) { run += n; return; }
    cnts.push(run); cur = v; run = n;
  };
  const { x0, y0, w, h, bits } = crop;
  for (let x = 0; x < W; x++) {
    if (x < x0 || x >= x0 + w) { push(0, H); continue; }
    push(0, y0);
    const cx = x - x0;
    for (let y = 0; y < h; y++) push(bits[y * w + cx], 1);
    push(0, H - y0 - h);
  }
  cnts.push(run);
  return { size: [H, W], counts: countsToString(cnts) };
}

export function cropArea(crop) {
  let n = 0;
  for (let i = 0; i < crop.bits.length; i++) n += crop.bits[i];
  return n;
}

export function cropHas(crop, x, y) {
  const cx = Math.floor(x) - crop.x0, cy = Math.floor(y) - crop.y0;
  return cx >= 0 && cy >= 0 && cx < crop.w && cy < crop.h && crop.bits[cy * crop.w + cx] === 1;
}

export function copyCrop(crop) {
  return { ...crop, bits: new Uint8Array(crop.bits) };
}

// Grow a crop to cover [ax0, ax1) x [ay0, ay1) clipped to the image (W x H).
export function growCrop(crop, ax0, ay0, ax1, ay1, W, H) {
  const nx0 = Math.max(0, Math.min(crop.w ? crop.x0 : ax0, ax0));
  const ny0 = Math.max(0, Math.min(crop.h ? crop.y0 : ay0, ay0));
  const nx1 = Math.min(W, Math.max(crop.w ? crop.x0 + crop.w : ax1, ax1));
  const ny1 = Math.min(H, Math.max(crop.h ? crop.y0 + crop.h : ay1, ay1));
  if (crop.w && nx0 === crop.x0 && ny0 === crop.y0 && nx1 === crop.x0 + crop.w && ny1 === crop.y0 + crop.h) return crop;
  const w = Math.max(0, nx1 - nx0), h = Math.max(0, ny1 - ny0);
  const bits = new Uint8Array(w * h);
  for (let y = 0; y < crop.h; y++) {
    for (let x = 0; x < crop.w; x++) {
      if (crop.bits[y * crop.w + x]) bits[(y + crop.y0 - ny0) * w + (x + crop.x0 - nx0)] = 1;
    }
  }
  return { x0: nx0, y0: ny0, w, h, bits };
}

// Paint (value 1) or erase (0) a disc of radius r (full-res px) at (cx, cy).
export function paintDisc(crop, cx, cy, r, value, W, H) {
  const nx0 = Math.floor(cx - r), ny0 = Math.floor(cy - r), nx1 = Math.ceil(cx + r) + 1, ny1 = Math.ceil(cy + r) + 1;
  const inside = crop.w && nx0 >= crop.x0 && ny0 >= crop.y0 && nx1 <= crop.x0 + crop.w && ny1 <= crop.y0 + crop.h;
  const m = inside ? 0 : Math.ceil(Math.max(16, 3 * r)); // grow with room to spare: fewer copies per stroke
  const out = value ? growCrop(crop, nx0 - m, ny0 - m, nx1 + m, ny1 + m, W, H) : crop;
  const r2 = r * r;
  for (let y = Math.max(out.y0, Math.floor(cy - r)); y <= Math.min(out.y0 + out.h - 1, Math.ceil(cy + r)); y++) {
    for (let x = Math.max(out.x0, Math.floor(cx - r)); x <= Math.min(out.x0 + out.w - 1, Math.ceil(cx + r)); x++) {
      if ((x - cx) ** 2 + (y - cy) ** 2 <= r2) out.bits[(y - out.y0) * out.w + (x - out.x0)] = value;
    }
  }
  return out;
}

// A canvas of the crop's size: fill colour at `fill` alpha, outline at full alpha.
export function cropCanvas(crop, rgb, fill = 110) {
  const c = document.createElement("canvas");
  c.width = Math.max(1, crop.w); c.height = Math.max(1, crop.h);
  if (!crop.w || !crop.h) return c;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(crop.w, crop.h);
  const d = img.data, b = crop.bits, w = crop.w, h = crop.h;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!b[i]) continue;
      const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 || !b[i - 1] || !b[i + 1] || !b[i - w] || !b[i + w];
      const o = i * 4;
      d[o] = rgb[0]; d[o + 1] = rgb[1]; d[o + 2] = rgb[2]; d[o + 3] = edge ? 255 : fill;
    }
  }
  ctx.putImageData(img, 0, 0);
  return c;
}
