// The review canvas: the image with its masks (pre-filled proposals with confidence,
// accepted masks), review keys, adding and fixing objects with clicks / boxes / brush,
// labels, undo/redo, submit. Every action is saved at once through the API and logged
// as an effort event. Coordinates: "full" = full-resolution image pixels (the masks'
// frame); "screen" = canvas pixels. Masks stay exact at full resolution (bit crops) and
// are drawn scaled.

import { api, uuid4 } from "./api.js";
import { K } from "./events.js";
import { esc } from "./html.js";
import {
  copyCrop, cropArea, cropCanvas, cropHas, decodeToCrop, encodeCrop, paintDisc,
} from "./rle.js";
import { attachNavigation, confirmSubmit, decorateList } from "./navigation.js";
import { plainError, showError } from "./notify.js";
import { draftForServer, enqueue, reapply, refreshMasks, undoLastPrompt } from "./recovery.js";

export const KEYS = [
  ["A", "accept the selected proposal"],
  ["X", "reject the selected proposal (or withdraw an accepted mask)"],
  ["Shift+A", "accept every confident proposal"],
  ["M", "show the less confident proposals too (hidden by the confident rule)"],
  ["F", "fix the selected mask: further clicks refine it (mask_input)"],
  ["Left click", "select a mask, or add a positive point (starts a new object)"],
  ["Right click / Alt+click", "add a negative point"],
  ["Drag", "box prompt"],
  ["Enter", "commit the object being drawn"],
  ["Esc", "cancel the object / close help / unselect"],
  ["B / E", "brush / eraser for touch-ups (again: back to clicks)"],
  ["[ / ]", "smaller / larger brush"],
  ["1 - 9", "label the selected mask with a top label"],
  ["L", "type a label (autocomplete over the taxonomy)"],
  ["Tab", "select the next mask"],
  ["Ctrl+Z / Ctrl+Y", "undo / redo"],
  ["Ctrl+Enter", "submit the image"],
  ["N or Space", "next image (after submit)"],
  ["?", "this help"],
];

const hsl2rgb = (h, s, l) => {
  const a = s * Math.min(l, 1 - l);
  const f = (n) => { const k = (n + h / 30) % 12; return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)))); };
  return [f(0), f(8), f(4)];
};
const colourOf = (id) => hsl2rgb((id * 137.508) % 360, 0.8, 0.55);
const VISIBLE = new Set(["proposed", "accepted"]);

export class Review {
  // root: element to render into; ctx: {events, projectId, onNext(), setStatus(text)}
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.ev = ctx.events;
    this.masks = new Map();
    this.draft = null;
    this.selected = null;
    this.hover = null;
    this.tool = "prompt";
    this.brushPx = 12; // screen pixels
    this.undoStack = [];
    this.redoStack = [];
    this.submitted = false;
    this.busy = false;
    this.decodeSeq = 0;
    this.lastActivity = performance.now();
    this.render();
  }

  // --- layout ---------------------------------------------------------------------------
  render() {
    this.root.innerHTML = `
      <div class="review">
        <div class="stage"><canvas id="view" tabindex="0" aria-label="image"></canvas>
          <div id="help" hidden><h2>Keys</h2><table>${KEYS.map(([k, d]) => `<tr><td><kbd>${k}</kbd></td><td>${d}</td></tr>`).join("")}</table>
          <p>Masks are drawn in distinct colours; proposals show their confidence. Press <kbd>?</kbd> or <kbd>Esc</kbd> to close.</p></div>
        </div>
        <aside class="side">
          <div><span id="mode">review</span> · <span id="imginfo"></span></div>
          <div><input id="label" list="taxonomy" placeholder="label (L)" autocomplete="off" style="width:100%"><datalist id="taxonomy"></datalist></div>
          <div class="toplabels" id="toplabels"></div>
          <h3>Masks</h3>
          <ul id="masklist"></ul>
          <div id="msg"></div>
          <div><button id="submit" class="primary" type="button">Submit (Ctrl+Enter)</button>
               <button id="next" type="button" disabled>Next (N)</button>
               <button id="reveal" type="button" title="show the proposals the model is less sure of">Less confident (M)</button>
               <button id="helpbtn" type="button">?</button></div>
        </aside>
      </div>`;
    this.canvas = this.root.querySelector("#view");
    this.g = this.canvas.getContext("2d");
    this.$ = (sel) => this.root.querySelector(sel);
    this.$("#submit").onclick = () => this.submit();
    this.$("#next").onclick = () => this.next();
    this.$("#helpbtn").onclick = () => this.toggleHelp();
    this.$("#reveal").onclick = () => this.reveal();
    this.$("#label").addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); this.applyLabel(this.$("#label").value.trim()); this.canvas.focus(); }
      if (e.key === "Escape") { e.preventDefault(); this.canvas.focus(); }
      e.stopPropagation();
    });
    this.bindCanvas();
    attachNavigation(this);
    this.onKey = (e) => this.key(e);
    window.addEventListener("keydown", this.onKey);
    this.onResize = () => this.fit();
    window.addEventListener("resize", this.onResize);
    this.activity = () => { this.lastActivity = performance.now(); };
    window.addEventListener("mousemove", this.activity);
  }

  destroy() {
    this.ev.context = {};
    window.removeEventListener("keydown", this.onKey);
    window.removeEventListener("resize", this.onResize);
    window.removeEventListener("mousemove", this.activity);
    clearInterval(this.hbTimer);
    clearInterval(this.tickTimer);
  }

  msg(text) { this.$("#msg").textContent = text || ""; }

  // --- loading ---------------------------------------------------------------------------
  async load(task) {
    this.task = task;
    this.image = task.image;
    this.labels = task.labels || [];
    this.W = task.image.width; this.H = task.image.height;
    this.ev.context = { image_id: task.image.id, lease_id: task.lease_id };
    this.$("#taxonomy").innerHTML = this.labels.map((l) => `<option value="${esc(l)}">`).join("");
    this.$("#toplabels").innerHTML = this.labels.slice(0, 9).map((l, i) => `<span>${i + 1} ${esc(l)}</span>`).join("");
    this.$("#imginfo").textContent = `image ${this.image.id} · ${this.W}×${this.H} · ${task.arm === "prefill" ? "with suggestions" : "draw from scratch"}`;
    this.revealed = false;
    this.$("#reveal").hidden = task.arm !== "prefill";
    const blob = await (await fetch(task.image.file_url, { credentials: "same-origin" })).blob();
    this.bitmap = await createImageBitmap(blob);
    const data = await api("GET", `/api/images/${this.image.id}/masks`);
    for (const m of data.masks) this.putMask(m);
    this.selectNextProposal();
    this.fit();
    this.emit(K.IMAGE_OPEN, { payload: { arm: task.arm, masks: data.masks.length } });
    this.hbTimer = setInterval(() => this.heartbeat(), Math.max(5, task.heartbeat_seconds) * 1000);
    this.tickTimer = setInterval(() => this.tick(), 10000);
    this.canvas.focus();
    this.updateList();
    await reapply(this, task);
  }

  putMask(m, crop = null) {
    const old = this.masks.get(m.id);
    const entry = old && !crop ? Object.assign(old, { data: m }) : {
      data: m, crop: crop || decodeToCrop(m.rle, m.bbox), rgb: colourOf(m.id), canvas: null,
    };
    if (!entry.canvas || crop || entry.drawnAs !== m.status) {
      entry.canvas = cropCanvas(entry.crop, entry.rgb, m.status === "proposed" ? 80 : 150);
      entry.drawnAs = m.status;
    }
    this.masks.set(m.id, entry);
    return entry;
  }

  emit(kind, opts = {}) {
    if (this.submitted) return null; // submit stopped this image's clock: nothing more for it
    return this.ev.emit(kind, { image_id: this.image.id, lease_id: this.task.lease_id, ...opts });
  }

  async heartbeat() {
    if (this.submitted || performance.now() - this.lastActivity > 10 * 60 * 1000) return;
    try {
      await api("POST", `/api/tasks/${this.task.lease_id}/heartbeat`, { draft: draftForServer(this) });
    } catch (err) {
      if (err.status === 409) this.ctx.setStatus(plainError(err));
    }
  }

  tick() { // a timing tick only while the person is active (idle gaps are capped anyway)
    if (!this.submitted && !document.hidden && performance.now() - this.lastActivity < 10000) this.emit(K.HEARTBEAT);
  }

  // --- geometry --------------------------------------------------------------------------
  fit() {
    const r = this.canvas.getBoundingClientRect();
    this.canvas.width = Math.max(1, Math.round(r.width));
    this.canvas.height = Math.max(1, Math.round(r.height));
    if (!this.W) return;
    const s = Math.min(this.canvas.width / this.W, this.canvas.height / this.H);
    this.view = { s, ox: (this.canvas.width - this.W * s) / 2, oy: (this.canvas.height - this.H * s) / 2 };
    Object.assign(this.canvas.dataset, { scale: s, ox: this.view.ox, oy: this.view.oy });
    this.draw();
  }

  toFull(e) {
    const r = this.canvas.getBoundingClientRect();
    const sx = (e.clientX - r.left) * (this.canvas.width / r.width), sy = (e.clientY - r.top) * (this.canvas.height / r.height);
    return [(sx - this.view.ox) / this.view.s, (sy - this.view.oy) / this.view.s];
  }

  inside([x, y]) { return x >= 0 && y >= 0 && x < this.W && y < this.H; }

  visibleMasks() {
    return [...this.masks.values()].filter((m) => VISIBLE.has(m.data.status));
  }

  hit([x, y]) {
    const cands = this.visibleMasks().filter((m) => cropHas(m.crop, x, y));
    cands.sort((a, b) => a.data.area - b.data.area);
    return cands.length ? cands[0].data.id : null;
  }

  // --- drawing ---------------------------------------------------------------------------
  draw() {
    const g = this.g, v = this.view;
    if (!v || !this.bitmap) return;
    g.clearRect(0, 0, this.canvas.width, this.canvas.height);
    g.imageSmoothingEnabled = true;
    g.drawImage(this.bitmap, v.ox, v.oy, this.W * v.s, this.H * v.s);
    const place = (crop, c) => g.drawImage(c, v.ox + crop.x0 * v.s, v.oy + crop.y0 * v.s, crop.w * v.s, crop.h * v.s);
    const fixing = this.draft && this.draft.fixOf;
    for (const m of this.visibleMasks()) {
      if (m.data.id === fixing || !m.crop.w) continue;
      place(m.crop, m.canvas);
      if (m.data.id === this.hover || m.data.id === this.selected) place(m.crop, m.canvas);
    }
    g.font = "12px system-ui, sans-serif";
    for (const m of this.visibleMasks()) {
      if (!m.crop.w || m.data.id === fixing) continue;
      const conf = m.data.confidence;
      const text = `${m.data.label || ""}${m.data.status === "proposed" && conf != null ? ` ${Math.round(conf * 100)}%` : ""}`.trim();
      const x = v.ox + m.crop.x0 * v.s, y = v.oy + m.crop.y0 * v.s;
      if (m.data.id === this.selected) {
        g.strokeStyle = "#fff"; g.lineWidth = 2; g.setLineDash([6, 4]);
        g.strokeRect(x, y, m.crop.w * v.s, m.crop.h * v.s); g.setLineDash([]);
      }
      if (text) {
        const tw = g.measureText(text).width + 6;
        g.fillStyle = `rgba(${m.rgb.join(",")},0.85)`; g.fillRect(x, y, tw, 15);
        g.fillStyle = "#000"; g.fillText(text, x + 3, y + 11);
      }
    }
    if (this.draft) {
      const d = this.draft;
      if (d.crop && d.crop.w) {
        if (!d.canvas) d.canvas = cropCanvas(d.crop, [255, 255, 255], 120);
        place(d.crop, d.canvas);
      }
      for (const [x, y, l] of d.points) {
        const sx = v.ox + x * v.s, sy = v.oy + y * v.s;
        g.fillStyle = l ? "#2e2" : "#e22"; g.strokeStyle = "#000"; g.lineWidth = 1.5;
        g.beginPath(); g.arc(sx, sy, 5, 0, 2 * Math.PI); g.fill(); g.stroke();
      }
      if (d.box) {
        const [x0, y0, x1, y1] = d.box;
        g.strokeStyle = "#2e2"; g.lineWidth = 2;
        g.strokeRect(v.ox + x0 * v.s, v.oy + y0 * v.s, (x1 - x0) * v.s, (y1 - y0) * v.s);
      }
    }
    if (this.drag && this.drag.box) {
      const [a, b] = [this.drag.start, this.drag.end];
      g.strokeStyle = "#ff0"; g.lineWidth = 1;
      g.strokeRect(v.ox + Math.min(a[0], b[0]) * v.s, v.oy + Math.min(a[1], b[1]) * v.s, Math.abs(b[0] - a[0]) * v.s, Math.abs(b[1] - a[1]) * v.s);
    }
    if (this.tool !== "prompt" && this.cursor) {
      g.strokeStyle = this.tool === "brush" ? "#fff" : "#f66"; g.lineWidth = 1;
      g.beginPath(); g.arc(v.ox + this.cursor[0] * v.s, v.oy + this.cursor[1] * v.s, this.brushPx, 0, 2 * Math.PI); g.stroke();
    }
    this.$("#mode").textContent = this.submitted ? "submitted" : this.draft ? `${this.draft.target === "fix" ? "fixing" : "new object"} · ${this.tool}` : `review · ${this.tool}`;
  }

  updateList() {
    const items = [...this.masks.values()].filter((m) => VISIBLE.has(m.data.status) || m.data.status === "rejected")
      .sort((a, b) => b.data.area - a.data.area).slice(0, 300);
    const ul = this.$("#masklist");
    ul.innerHTML = items.map((m) => {
      const d = m.data, conf = d.confidence != null ? `${Math.round(d.confidence * 100)}%` : "";
      return `<li data-id="${d.id}" class="${d.id === this.selected ? "sel" : ""}"><span class="sw" style="background:rgb(${m.rgb.join(",")})"></span>#${d.id} ${esc(d.label || "")} ${conf}<span class="st">${d.status}</span></li>`;
    }).join("");
    ul.querySelectorAll("li").forEach((li) => { li.onclick = () => this.select(Number(li.dataset.id)); });
    decorateList(this);
  }

  // --- selection -------------------------------------------------------------------------
  select(id, log = true) {
    this.selected = id;
    if (id != null && log) this.emit(K.MASK_SELECT, { mask_id: id });
    this.updateList();
    this.draw();
  }

  selectNextProposal() {
    const props = this.visibleMasks().filter((m) => m.data.status === "proposed").sort((a, b) => b.data.area - a.data.area);
    this.selected = props.length ? props[0].data.id : null;
  }

  target() { return this.selected ?? this.hover; }

  // --- mouse -----------------------------------------------------------------------------
  bindCanvas() {
    const c = this.canvas;
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("mousedown", (e) => {
      if (this.submitted || !this.view) return;
      c.focus();
      const p = this.toFull(e);
      this.drag = { start: p, end: p, button: e.button, alt: e.altKey, ctrl: e.ctrlKey || e.metaKey, sx: e.clientX, sy: e.clientY, box: false };
      if (this.tool !== "prompt" && e.button === 0) { this.strokeStart(); this.paint(p); }
    });
    c.addEventListener("mousemove", (e) => {
      if (!this.view) return;
      const p = this.toFull(e);
      this.cursor = p;
      if (this.drag) {
        this.drag.end = p;
        if (this.tool !== "prompt") { if (this.drag.button === 0) this.paint(p); }
        else if (this.drag.button === 0 && !this.drag.alt && Math.hypot(e.clientX - this.drag.sx, e.clientY - this.drag.sy) > 6) this.drag.box = true;
        this.draw();
        return;
      }
      const h = this.inside(p) ? this.hit(p) : null;
      if (h !== this.hover) { this.hover = h; this.draw(); }
      else if (this.tool !== "prompt") this.draw();
    });
    window.addEventListener("mouseup", (e) => {
      const d = this.drag;
      if (!d) return;
      this.drag = null;
      if (this.submitted) return;
      if (this.tool !== "prompt") { if (d.button === 0) this.strokeEnd(); return; }
      if (d.box) {
        const [a, b] = [d.start, d.end];
        const box = [Math.max(0, Math.min(a[0], b[0])), Math.max(0, Math.min(a[1], b[1])), Math.min(this.W, Math.max(a[0], b[0])), Math.min(this.H, Math.max(a[1], b[1]))];
        if (box[2] - box[0] >= 2 && box[3] - box[1] >= 2) this.prompt({ box });
        else this.draw();
        return;
      }
      if (!this.inside(d.start)) return;
      const positive = d.button === 0 && !d.alt;
      const negative = d.button === 2 || (d.button === 0 && d.alt);
      if (!positive && !negative) return;
      if (!this.draft) {
        const h = this.hit(d.start);
        if (h != null && !d.ctrl) { this.select(h); return; }
        if (!positive) return;
      }
      this.prompt({ point: [d.start[0], d.start[1], positive ? 1 : 0] });
    });
  }

  // --- objects: prompts, preview, commit -------------------------------------------------
  startDraft(target, fixOf = null) {
    const base = fixOf != null ? this.masks.get(fixOf) : null;
    this.draft = {
      target, fixOf, points: [], box: null, maskInputId: null, score: null, clicks: 0,
      crop: base ? copyCrop(base.crop) : { x0: 0, y0: 0, w: 0, h: 0, bits: new Uint8Array(0) },
      canvas: null, label: base ? base.data.label : null, useStored: base != null,
    };
  }

  async prompt({ point, box }) {
    if (!this.draft) this.startDraft("new");
    const d = this.draft;
    const t = performance.now();
    if (point) {
      d.points.push(point.map((v, i) => (i < 2 ? Math.min(Math.max(v, 0), (i ? this.H : this.W) - 0.001) : v)));
      d.clicks++;
      this.emit(K.PROMPT_CLICK, { t, mask_id: d.fixOf, payload: { x: point[0], y: point[1], positive: point[2] === 1, target: d.target } });
    } else {
      d.box = box;
      d.clicks++;
      this.emit(K.PROMPT_BOX, { t, mask_id: d.fixOf, payload: { box } });
    }
    this.draw();
    await this.decode();
  }

  async decode() {
    const d = this.draft;
    if (!d || (!d.points.length && !d.box)) return;
    const seq = ++this.decodeSeq;
    const body = { points: d.points.map(([x, y]) => [x, y]), labels: d.points.map((p) => p[2]), box: d.box };
    if (d.maskInputId) body.mask_input_id = d.maskInputId;
    else if (d.useStored && d.fixOf != null) body.mask_id = d.fixOf;
    try {
      const r = await api("POST", `/api/images/${this.image.id}/decode`, body);
      if (seq !== this.decodeSeq || this.draft !== d) return; // a newer prompt won
      d.crop = decodeToCrop(r.rle, r.bbox);
      d.canvas = null;
      d.score = r.score;
      d.maskInputId = r.mask_input_id;
      this.decoded = seq;
      this.msg(`preview: ${r.area} px, score ${r.score.toFixed(2)} (${Math.round(r.decode_ms)} ms) — Enter commits`);
      this.draw();
    } catch (err) {
      if (seq === this.decodeSeq) showError(this.$("#msg"), err, () => this.decode());
    }
  }

  strokeStart() {
    if (!this.draft) {
      const sel = this.selected != null ? this.masks.get(this.selected) : null;
      if (sel && VISIBLE.has(sel.data.status)) this.startDraft("fix", sel.data.id);
      else this.startDraft("new");
    }
    this.stroke = { mode: this.tool === "brush" ? "paint" : "erase" };
  }

  paint([x, y]) {
    if (!this.draft || !this.stroke) return;
    const r = this.brushPx / this.view.s;
    this.draft.crop = paintDisc(this.draft.crop, x, y, r, this.tool === "brush" ? 1 : 0, this.W, this.H);
    this.draft.canvas = null;
  }

  strokeEnd() {
    if (!this.stroke) return;
    this.emit(K.BRUSH, { mask_id: this.draft.fixOf, payload: { mode: this.stroke.mode, radius: this.brushPx / this.view.s } });
    this.stroke = null;
    this.draft.brushed = true;
    this.draw();
  }

  cancelDraft() {
    if (!this.draft) return;
    this.emit(K.OBJECT_CANCEL, { mask_id: this.draft.fixOf });
    this.draft = null;
    this.msg("object cancelled");
    this.draw();
  }

  async commit() {
    const d = this.draft;
    if (!d || this.busy) return;
    const t = performance.now();
    if (!d.crop.w || cropArea(d.crop) === 0) { this.msg("nothing to commit: the mask is empty"); return; }
    const rle = encodeCrop(d.crop, this.H, this.W);
    const label = d.label || this.currentLabel || null;
    // one key per object: a retry (automatic, or Enter again after an error) reuses it, so
    // the server answers with the mask it already made instead of adding a second one
    d.idempotencyKey = d.idempotencyKey || uuid4();
    const keyed = { idempotencyKey: d.idempotencyKey };
    await this.run(async () => {
      let m;
      if (d.target === "fix") {
        const old = this.masks.get(d.fixOf);
        const prev = old.data.status;
        m = await api("POST", `/api/masks/${d.fixOf}/fix`, { version: old.data.version, rle, label, score: d.score, lease_id: this.task.lease_id }, keyed);
        old.data.status = "superseded"; old.data.version += 1;
        this.pushUndo({ kind: "fix", id: m.id, old: d.fixOf, prev });
      } else {
        m = await api("POST", `/api/images/${this.image.id}/masks`, { rle, label, score: d.score, lease_id: this.task.lease_id }, keyed);
        this.pushUndo({ kind: "add", id: m.id });
      }
      this.putMask(m, d.crop);
      this.emit(K.OBJECT_COMMIT, { t, mask_id: m.id, payload: { parent_id: m.parent_id, label: m.label, clicks: d.clicks } });
      this.draft = null;
      this.select(m.id, false);
      this.msg(`object #${m.id} saved${m.label ? ` as ${m.label}` : " — press 1-9 or L to label it"}`);
    });
  }

  // --- review decisions ------------------------------------------------------------------
  async decide(kind) {
    const id = this.target();
    const m = id != null ? this.masks.get(id) : null;
    if (!m) { this.msg("select a mask first (click it, or Tab)"); return; }
    const t = performance.now();
    await this.run(async () => {
      const prev = m.data.status;
      if (kind === "accept") {
        if (prev !== "proposed") { this.msg(`mask #${id} is already ${prev}`); return; }
        this.putMask(await api("POST", `/api/masks/${id}/accept`, { version: m.data.version, lease_id: this.task.lease_id }));
        this.emit(K.MASK_ACCEPT, { t, mask_id: id });
      } else if (prev === "proposed") {
        this.putMask(await api("POST", `/api/masks/${id}/reject`, { version: m.data.version, lease_id: this.task.lease_id }));
        this.emit(K.MASK_REJECT, { t, mask_id: id });
      } else if (prev === "accepted") {
        this.putMask(await this.revert(id, "rejected"));
        this.emit(K.MASK_REJECT, { t, mask_id: id, payload: { withdraw: true } });
      } else return;
      this.pushUndo({ kind: "status", ids: [id], prev: [prev] });
      this.selectNextProposal();
      this.updateList(); this.draw();
    });
  }

  async acceptAll() {
    const t = performance.now();
    await this.run(async () => {
      const rows = await api("POST", `/api/images/${this.image.id}/masks/accept-all-confident`, { lease_id: this.task.lease_id });
      for (const r of rows) this.putMask(r);
      this.emit(K.ACCEPT_ALL_CONFIDENT, { t, payload: { mask_ids: rows.map((r) => r.id) } });
      if (rows.length) this.pushUndo({ kind: "status", ids: rows.map((r) => r.id), prev: rows.map(() => "proposed") });
      this.selectNextProposal();
      this.msg(`${rows.length} confident proposal(s) accepted`);
      this.updateList(); this.draw();
    });
  }

  // Show the proposals the confident rule hid. The event (sent at once) tells the server
  // they were shown: from now on the metrics and the submit summary count them.
  async reveal() {
    if (this.task.arm !== "prefill") { this.msg("the control arm has no proposals"); return; }
    if (this.revealed) { this.msg("the less confident proposals are already shown"); return; }
    const t = performance.now();
    await this.run(async () => {
      const data = await api("GET", `/api/images/${this.image.id}/masks?include=less_confident`);
      const fresh = data.masks.filter((m) => !this.masks.has(m.id));
      for (const m of fresh) this.putMask(m);
      this.revealed = true;
      this.$("#reveal").disabled = true;
      if (this.selected == null) this.selectNextProposal();
      this.updateList(); this.draw();
      this.emit(K.REVEAL_LESS_CONFIDENT, { t, payload: { mask_ids: fresh.map((m) => m.id) } });
      const sent = await this.ev.drain(5000);
      this.msg(`${fresh.length} less confident proposal(s) shown${sent ? "" : " (the reveal event is not saved yet; it is retried)"}`);
    });
  }

  async applyLabel(label) {
    if (!label) return;
    if (this.labels.length && !this.labels.includes(label)) { this.msg(`"${label}" is not in the taxonomy`); return; }
    this.currentLabel = label;
    if (this.draft) { this.draft.label = label; this.msg(`the object will be labelled ${label}`); return; }
    const m = this.selected != null ? this.masks.get(this.selected) : null;
    if (!m) { this.msg(`new objects will be labelled ${label}`); return; }
    const t = performance.now();
    await this.run(async () => {
      const prev = m.data.label;
      this.putMask(await api("PATCH", `/api/masks/${m.data.id}`, { version: m.data.version, label, lease_id: this.task.lease_id }));
      this.emit(K.LABEL_SET, { t, mask_id: m.data.id, payload: { label } });
      this.pushUndo({ kind: "label", id: m.data.id, prev, next: label });
      this.msg(`#${m.data.id} labelled ${label}`);
      this.updateList(); this.draw();
    });
  }

  // --- undo / redo (inverse operations through the API) ----------------------------------
  pushUndo(entry) { this.undoStack.push(entry); this.redoStack = []; }

  async revert(id, status) {
    const m = this.masks.get(id);
    return api("POST", `/api/masks/${id}/revert`, { version: m.data.version, status, lease_id: this.task.lease_id });
  }

  async applyEntry(e, undo) {
    if (e.kind === "status") {
      if (undo) e.next = e.ids.map((id) => this.masks.get(id).data.status);
      for (let i = 0; i < e.ids.length; i++) {
        this.putMask(await this.revert(e.ids[i], undo ? e.prev[i] : e.next[i]));
      }
    } else if (e.kind === "add") {
      this.putMask(await this.revert(e.id, undo ? "rejected" : "accepted"));
    } else if (e.kind === "fix") {
      this.putMask(await this.revert(e.id, undo ? "rejected" : "accepted"));
      this.putMask(await this.revert(e.old, undo ? e.prev : "superseded"));
    } else if (e.kind === "label") {
      const m = this.masks.get(e.id);
      this.putMask(await api("PATCH", `/api/masks/${e.id}`, { version: m.data.version, label: undo ? e.prev : e.next, lease_id: this.task.lease_id }));
    }
  }

  async undo(redo = false) {
    const from = redo ? this.redoStack : this.undoStack, to = redo ? this.undoStack : this.redoStack;
    if (this.draft) { if (redo || !undoLastPrompt(this)) this.cancelDraft(); return; }
    const e = from.pop();
    if (!e) { this.msg(`nothing to ${redo ? "redo" : "undo"}`); return; }
    const t = performance.now();
    await this.run(async () => {
      await this.applyEntry(e, !redo);
      to.push(e);
      this.emit(redo ? K.REDO : K.UNDO, { t, payload: { action: e.kind } });
      this.msg(`${redo ? "redone" : "undone"}: ${e.kind}`);
      this.updateList(); this.draw();
    }, () => from.push(e));
  }

  async run(fn, onError = null) {
    this.busy = true;
    try {
      await fn();
    } catch (err) {
      if (onError) onError();
      if (enqueue(this, err)) this.msg(plainError(err));
      else showError(this.$("#msg"), err, async () => { this.ctx.setStatus(""); if (err.status === 409) await refreshMasks(this).catch(() => null); await this.run(fn, onError); });
      this.ctx.setStatus(plainError(err));
    } finally {
      this.busy = false;
    }
  }

  // --- submit / next ---------------------------------------------------------------------
  async submit() {
    if (this.submitted) return;
    if (this.draft) { this.msg("finish the object first: Enter commits, Esc cancels"); return; }
    if (!(await confirmSubmit(this))) return;
    const t = performance.now();
    await this.run(async () => {
      // a repeated submit of the same body returns the first answer: safe to retry
      const r = await api("POST", `/api/tasks/${this.task.lease_id}/submit`, { ops: [] }, { retries: 2 });
      this.emit(K.SUBMIT, { t, payload: { counts: r.counts } });
      this.submitted = true;
      this.ev.stop();
      this.ev.flush();
      this.$("#next").disabled = false;
      this.$("#submit").disabled = true;
      this.msg(`Submitted (${Object.entries(r.counts).map(([k, v]) => `${v} ${k}`).join(", ")}). N or Space: next image.`);
      this.ctx.setStatus("submitted");
      this.draw();
    });
  }

  next() {
    if (!this.submitted) { this.msg("submit first (Ctrl+Enter)"); return; }
    this.ctx.onNext();
  }

  toggleHelp(force) {
    const h = this.$("#help");
    h.hidden = force !== undefined ? !force : !h.hidden;
  }

  // --- keys ------------------------------------------------------------------------------
  key(e) {
    if (e.target && e.target.tagName === "INPUT") return;
    const k = e.key;
    const ctrl = e.ctrlKey || e.metaKey;
    const handled = () => e.preventDefault();
    this.lastActivity = performance.now();
    if (k === "?") { handled(); this.toggleHelp(); return; }
    if (k === "Escape") {
      handled();
      if (!this.$("#help").hidden) this.toggleHelp(false);
      else if (this.draft) this.cancelDraft();
      else this.select(null, false);
      return;
    }
    if (ctrl && k === "Enter") { handled(); this.submit(); return; }
    if (ctrl && (k === "z" || k === "Z")) { handled(); this.undo(e.shiftKey); return; }
    if (ctrl && (k === "y" || k === "Y")) { handled(); this.undo(true); return; }
    if (ctrl) return;
    if (this.submitted) {
      if (k === "n" || k === "N" || k === " ") { handled(); this.next(); }
      return;
    }
    if (k === "Enter") { handled(); this.commit(); return; }
    if (k === "A" && e.shiftKey) { handled(); this.acceptAll(); return; }
    if (k === "m" || k === "M") { handled(); this.reveal(); return; }
    if (k === "a") { handled(); this.decide("accept"); return; }
    if (k === "x" || k === "X") { handled(); this.decide("reject"); return; }
    if (k === "f" || k === "F") {
      handled();
      const id = this.target();
      if (id == null) { this.msg("select a mask to fix"); return; }
      this.startDraft("fix", id);
      this.emit(K.FIX_START, { mask_id: id, payload: { mask_id: id } });
      this.msg(`fixing #${id}: click to refine, B/E to paint, Enter to save, Esc to cancel`);
      this.draw();
      return;
    }
    if (k === "b" || k === "B") { handled(); this.tool = this.tool === "brush" ? "prompt" : "brush"; this.draw(); return; }
    if (k === "e" || k === "E") { handled(); this.tool = this.tool === "erase" ? "prompt" : "erase"; this.draw(); return; }
    if (k === "[") { handled(); this.brushPx = Math.max(2, this.brushPx - 2); this.draw(); return; }
    if (k === "]") { handled(); this.brushPx = Math.min(80, this.brushPx + 2); this.draw(); return; }
    if (k === "l" || k === "L") { handled(); this.$("#label").focus(); this.$("#label").select(); return; }
    if (k === "Tab") {
      handled();
      const ids = this.visibleMasks().sort((a, b) => b.data.area - a.data.area).map((m) => m.data.id);
      if (ids.length) this.select(ids[(ids.indexOf(this.selected) + 1) % ids.length]);
      return;
    }
    if (/^[1-9]$/.test(k)) {
      const label = this.labels[Number(k) - 1];
      if (label) { handled(); this.applyLabel(label); }
    }
  }
}
