// The review canvas: the image with its masks (pre-filled proposals with confidence,
// accepted masks), review keys and buttons, adding and fixing objects with clicks / boxes /
// brush, labels, undo/redo, submit. Every action is saved at once through the API and
// logged as an effort event. Coordinates: "full" = full-resolution image pixels (the
// masks' frame); "screen" = canvas pixels (viewport.js maps one to the other; zoom / pan).
// Stored masks are kept as column-run geometry decoded off the main thread (decoder.js,
// geometry.js) and drawn as paths (render.js); the object being drawn keeps an exact bit
// crop (rle.js) for the brush. Display controls: opacity, outline only (O), hide all
// (hold H), per-mask visibility in the list (masklist.js). Labels: labels.js.
// Performance marks for the benchmark: de:canvas-ready, de:prompt, de:preview,
// de:commit-start, de:commit.

import { api, uuid4 } from "./api.js";
import { sharedDecoder } from "./decoder.js";
import { K } from "./events.js";
import { cropFromGeo, geoArea, geoFromCounts, geoFromCrop, geoHas } from "./geometry.js";
import { Labels } from "./labels.js";
import { MaskList } from "./masklist.js";
import { Renderer } from "./render.js";
import { countsFromString, cropArea, encodeCrop, paintDisc } from "./rle.js";
import { Minimap, Viewport } from "./viewport.js";
import { attachNavigation, confirmSubmit, decorateList, flag, previous, skip } from "./navigation.js";
import { plainError, showError } from "./notify.js";
import { draftForServer, enqueue, reapply, refreshMasks, undoLastPrompt } from "./recovery.js";

export const KEYS = [
  ["A", "accept the selected proposal (the selection stays on it; the next one is marked \"next\")"],
  ["X", "reject the selected proposal (or withdraw an accepted mask)"],
  ["J", "select the next proposal (marked \"next\" with a dashed white outline)"],
  ["Shift+A", "accept every confident proposal"],
  ["M", "show the less confident proposals too (dashed outlines)"],
  ["F", "fix the selected mask: further clicks refine it (mask_input)"],
  ["Left click", "select the smallest mask under the cursor; click again at the same spot for the next larger one, then once more to start a new object there"],
  ["Shift+click / Ctrl+click", "start a new object on top of masks (or the \"New object\" button, then click)"],
  ["Right click / Alt+click", "add a negative point"],
  ["Drag", "box prompt"],
  ["Enter", "commit the object being drawn"],
  ["Esc", "cancel the object / close help / unselect"],
  ["B / E", "brush / eraser for touch-ups (again: back to clicks)"],
  ["[ / ]", "smaller / larger brush"],
  ["1 - 9", "label the selected mask (or the object being drawn) with the project's hotkey labels; nothing else"],
  ["L", "type a label (autocomplete over the taxonomy)"],
  ["Wheel / + / -", "zoom in / out at the cursor"],
  ["0", "fit the image"],
  ["Z", "1:1 (one image pixel per screen pixel) at the cursor"],
  ["Space+drag / middle drag", "pan"],
  ["O", "outline only (no fill)"],
  ["H (hold)", "hide all masks while held"],
  ["Ctrl+Z / Ctrl+Y", "undo / redo (an accept-all is undone in one step); while drawing an object, Ctrl+Z removes the last click only"],
  ["Ctrl+Enter", "submit the image"],
  ["N or Space", "next image (after submit)"],
  ["S", "skip: put this image at the back of your queue"],
  ["Shift+F", "flag this image for a reviewer (asks for a reason), then skip"],
  ["P", "previous image (the one you finished or skipped last)"],
  ["Tab", "move focus to the next control (it is not captured by the canvas)"],
  ["?", "this help"],
];

// [action, button text, key shown, title]
const TOOLBAR = [
  ["accept", "Accept", "A", "accept the selected proposal"],
  ["reject", "Reject", "X", "reject the selected proposal"],
  ["next-target", "Next", "J", "select the next proposal"],
  ["accept-all", "Accept all", "Shift+A", "accept every confident proposal"],
  ["new-object", "New object", "Shift+click", "the next click starts a new object, even on a mask"],
  ["fix", "Fix", "F", "fix the selected mask"],
  ["brush", "Brush", "B", "brush (paint)"],
  ["erase", "Eraser", "E", "eraser"],
  ["commit", "Save object", "Enter", "commit the object being drawn"],
  ["cancel", "Cancel", "Esc", "cancel the object being drawn"],
  ["undo", "Undo", "Ctrl+Z", "undo"],
  ["redo", "Redo", "Ctrl+Y", "redo"],
  ["zoom-in", "Zoom +", "+", "zoom in"],
  ["zoom-out", "Zoom −", "-", "zoom out"],
  ["fit", "Fit", "0", "fit the image"],
  ["actual", "1:1", "Z", "one image pixel per screen pixel"],
];

const hsl2rgb = (h, s, l) => {
  const a = s * Math.min(l, 1 - l);
  const f = (n) => { const k = (n + h / 30) % 12; return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)))); };
  return [f(0), f(8), f(4)];
};
const colourOf = (id) => hsl2rgb((id * 137.508) % 360, 0.8, 0.55);
const VISIBLE = new Set(["proposed", "accepted"]);
const SAME_SPOT_PX = 5; // clicks this close (screen px) cycle through the masks under them

export class Review {
  // root: element to render into; ctx: {events, projectId, onNext(), setStatus(text)}
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.ev = ctx.events;
    this.masks = new Map();
    this.maskRev = 0; // bumped on every mask change: the base layer is re-drawn
    this.hidden = new Set(); // mask ids hidden from the list's toggles
    this.draft = null;
    this.selected = null;
    this.nextTarget = null;
    this.hover = null;
    this.tool = "prompt";
    this.brushPx = 12; // screen pixels
    this.opacity = 0.4;
    this.outlineOnly = false;
    this.hideAll = false;
    this.newMode = false;
    this.undoStack = [];
    this.redoStack = [];
    this.submitted = false;
    this.busy = false;
    this.decodeSeq = 0;
    this.lastActivity = performance.now();
    this.view = null;
    this.viewport = new Viewport();
    this.decoder = sharedDecoder(); // kept for the next image
    this.render();
  }

  // --- layout ---------------------------------------------------------------------------
  render() {
    this.root.innerHTML = `
      <div class="review">
        <div class="work">
          <div class="toolbar" role="toolbar" aria-label="actions">${TOOLBAR.map(([act, text, key, title]) => `<button type="button" data-act="${act}" title="${title} (${key})" aria-keyshortcuts="${key}">${text} <kbd>${key}</kbd></button>`).join("")}</div>
          <div class="stage"><canvas id="view" tabindex="0" aria-label="image with masks; keys: press ? for help"></canvas>
            <canvas id="minimap" hidden aria-label="minimap: click to move the view"></canvas>
            <div id="help" hidden><h2>Keys</h2><table>${KEYS.map(([k, d]) => `<tr><td><kbd>${k}</kbd></td><td>${d}</td></tr>`).join("")}</table>
            <p>Every action also has a button above the image. Masks are drawn in distinct colours: solid outlines are confident proposals and accepted masks, dashed outlines are less confident proposals.
            On a dense image a click selects the smallest mask under the cursor; clicking again at the same spot selects the next larger one, and once more starts a new object there.
            Shift+click (or the <b>New object</b> button) always starts a new object, even on top of masks.
            Number keys only ever label the selected mask; new objects get the label chosen under "Label for new objects".
            Press <kbd>?</kbd> or <kbd>Esc</kbd> to close.</p></div>
          </div>
        </div>
        <aside class="side">
          <div><span id="mode">review</span> · <span id="imginfo"></span></div>
          <div class="display">
            <label>Opacity <input id="opacity" type="range" min="0" max="100" value="40" aria-label="mask opacity"></label>
            <label><input id="outline" type="checkbox"> Outline only (O)</label>
            <button id="hideall" type="button" title="hide all masks while pressed (or hold H)">Hide all (hold H)</button>
            <button id="reveal" type="button" title="show the proposals the model is less sure of">Less confident (M)</button>
            <div class="legend"><span class="sw"></span> confident <span class="sw dashed"></span> less confident <span class="sw nextsw"></span> next</div>
          </div>
          <div><label for="newlabel">Label for new objects</label> <select id="newlabel"></select></div>
          <div><input id="label" list="taxonomy" placeholder="label the selection (L)" aria-label="label the selected mask" autocomplete="off" style="width:100%"><datalist id="taxonomy"></datalist></div>
          <div class="toplabels" id="toplabels" aria-label="label hotkeys"></div>
          <h3>Masks</h3>
          <ul id="masklist"></ul>
          <div id="msg" role="status"></div>
          <div><button id="submit" class="primary" type="button">Submit (Ctrl+Enter)</button>
               <button id="next" type="button" disabled>Next (N)</button>
               <button id="helpbtn" type="button" aria-label="help">?</button></div>
        </aside>
      </div>`;
    this.canvas = this.root.querySelector("#view");
    this.renderer = new Renderer(this.canvas);
    this.$ = (sel) => this.root.querySelector(sel);
    this.minimap = new Minimap(this.$("#minimap"), this.viewport, () => this.viewChanged());
    this.list = new MaskList(this.$("#masklist"), {
      onSelect: (id) => { this.select(id); this.canvas.focus(); },
      onToggle: (id) => this.toggleMask(id),
    });
    this.labelsUI = new Labels(this.root, {
      onChip: (label) => { this.applyLabel(label); this.canvas.focus(); },
      onNewLabel: (label) => this.msg(label ? `new objects will be labelled ${label}` : "new objects will have no label"),
    });
    this.$("#submit").onclick = () => this.submit();
    this.$("#next").onclick = () => this.next();
    this.$("#helpbtn").onclick = () => this.toggleHelp();
    this.$("#reveal").onclick = () => this.reveal();
    this.$("#opacity").addEventListener("input", (e) => { this.opacity = Number(e.target.value) / 100; this.draw(); });
    this.$("#outline").addEventListener("change", (e) => { this.outlineOnly = e.target.checked; this.draw(); });
    const hide = (on) => { if (this.hideAll !== on) { this.hideAll = on; this.draw(); } };
    this.$("#hideall").addEventListener("pointerdown", () => hide(true));
    for (const ev of ["pointerup", "pointerleave", "blur"]) this.$("#hideall").addEventListener(ev, () => hide(false));
    this.$(".toolbar").addEventListener("click", (e) => {
      const b = e.target.closest("button[data-act]");
      if (!b) return;
      this.act(b.dataset.act);
      this.canvas.focus();
    });
    this.$("#label").addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); this.typedLabel(this.$("#label").value.trim()); this.canvas.focus(); }
      if (e.key === "Escape") { e.preventDefault(); this.canvas.focus(); }
      e.stopPropagation();
    });
    this.bindCanvas();
    attachNavigation(this);
    this.onKey = (e) => this.key(e);
    this.onKeyUp = (e) => this.keyUp(e);
    window.addEventListener("keydown", this.onKey);
    window.addEventListener("keyup", this.onKeyUp);
    this.onResize = () => this.fit();
    window.addEventListener("resize", this.onResize);
    this.activity = () => { this.lastActivity = performance.now(); };
    window.addEventListener("mousemove", this.activity);
  }

  destroy() {
    this.ev.context = {};
    window.removeEventListener("keydown", this.onKey);
    window.removeEventListener("keyup", this.onKeyUp);
    window.removeEventListener("resize", this.onResize);
    window.removeEventListener("mousemove", this.activity);
    window.removeEventListener("mouseup", this.onMouseUp);
    clearInterval(this.hbTimer);
    clearInterval(this.tickTimer);
  }

  msg(text) { this.$("#msg").textContent = text || ""; }

  // The toolbar's actions (each also has a key, see KEYS).
  act(name) {
    const v = this.viewport;
    const actions = {
      accept: () => this.decide("accept"),
      reject: () => this.decide("reject"),
      "next-target": () => this.goNext(),
      "accept-all": () => this.acceptAll(),
      "new-object": () => { this.newMode = !this.newMode; this.msg(this.newMode ? "click to start a new object (even on a mask)" : ""); this.draw(); },
      fix: () => this.startFix(),
      brush: () => this.setTool("brush"),
      erase: () => this.setTool("erase"),
      commit: () => this.commit(),
      cancel: () => this.cancelDraft(),
      undo: () => this.undo(false),
      redo: () => this.undo(true),
      "zoom-in": () => { v.zoomBy(1.5); this.viewChanged(); },
      "zoom-out": () => { v.zoomBy(1 / 1.5); this.viewChanged(); },
      fit: () => { v.fit(); this.viewChanged(); },
      actual: () => { v.actualSize(); this.viewChanged(); },
    };
    if (this.submitted && !["zoom-in", "zoom-out", "fit", "actual"].includes(name)) return;
    actions[name]();
  }

  // --- loading ---------------------------------------------------------------------------
  async load(task) {
    const t0 = performance.now();
    performance.mark("de:load-start");
    this.task = task;
    this.image = task.image;
    this.labels = task.labels || [];
    this.labelsUI.set(this.labels, task.hotkeys);
    this.W = task.image.width; this.H = task.image.height;
    this.ev.context = { image_id: task.image.id, lease_id: task.lease_id };
    this.$("#imginfo").textContent = `image ${this.image.id} · ${this.W}×${this.H} · ${task.arm === "prefill" ? "with suggestions" : "draw from scratch"}`;
    this.revealed = false;
    this.$("#reveal").hidden = task.arm !== "prefill";
    // photo and masks load in parallel; the masks' RLEs are decoded by the workers
    const since = () => performance.now() - t0;
    const phase = {};
    // the photo at full size for zooming in, and decoded again at the reduction that fits
    // the canvas (both by the browser's decoder, off the main thread) for the first view
    const fitS = Math.min(this.canvas.clientWidth / this.W, this.canvas.clientHeight / this.H);
    const k = Math.min(3, Math.max(0, Math.floor(Math.log2(1 / fitS))));
    // below 1:1 at fit, the first view uses the server's reduced rendition (?width=, a
    // fraction of the bytes and of the decode); the full resolution follows lazily
    const url = task.image.file_url, image = this.image;
    const getBitmap = (u) => fetch(u, { credentials: "same-origin" })
      .then((r) => { if (!r.ok) throw new Error(`image: HTTP ${r.status}`); return r.blob(); })
      .then((b) => { phase.photo_fetch_ms = phase.photo_fetch_ms || since(); return createImageBitmap(b); });
    const photo = (k ? getBitmap(`${url}?width=${Math.round(this.W / 2 ** k)}`).catch(() => getBitmap(url)) : getBitmap(url))
      .then((bm) => { this.renderer.setLevels(bm, []); phase.photo_ms = since(); return bm; });
    const data = await api("GET", `/api/images/${this.image.id}/masks`);
    phase.masks_api_ms = since();
    const [bitmap] = await Promise.all([photo, this.addMasks(data.masks).then((x) => { phase.masks_decoded_ms = since(); return x; })]);
    this.bitmap = bitmap;
    this.viewport.setImage(this.W, this.H);
    this.minimap.setImage(this.renderer.level(bitmap, 0)); // the smallest level
    this.selectNextProposal();
    const t1 = performance.now();
    this.fit();
    performance.mark("de:canvas-ready");
    this.timings = { ready_ms: since(), decode_ms: this.lastDecodeMs, draw_ms: performance.now() - t1, ...phase };
    this.emit(K.IMAGE_OPEN, { payload: { arm: task.arm, masks: data.masks.length } });
    this.hbTimer = setInterval(() => this.heartbeat(), Math.max(5, task.heartbeat_seconds) * 1000);
    this.tickTimer = setInterval(() => this.tick(), 10000);
    this.canvas.focus();
    this.updateList();
    // full resolution only once zoomed past what the reduced photo shows
    this.fullPending = bitmap.width < this.W ? () => this.loadFull(url, image, bitmap) : null;
    this.maybeLoadFull();
    await reapply(this, task);
  }

  maybeLoadFull() {
    if (this.fullPending && this.bitmap && this.view && this.view.s > (this.bitmap.width / this.W) * 1.01) {
      const go = this.fullPending;
      this.fullPending = null;
      go();
    }
  }

  // The full-resolution photo when zoomed in (drawn from the reduced one until then).
  loadFull(url, image, small) {
    fetch(url, { credentials: "same-origin" }).then((r) => r.blob()).then((b) => createImageBitmap(b))
      .then((full) => {
        if (this.image !== image) { full.close(); return; }
        this.renderer.setLevels(full, [[small, small.width / this.W]]);
        this.bitmap = full;
        this.renderer.baseKey = null;
        this.draw();
      })
      .catch(() => null); // the reduced photo stays
  }

  // Decode a batch of masks off the main thread and keep them; one bad RLE is reported
  // and skipped, the others are shown.
  async addMasks(rows) {
    const { geos, errors, ms } = await this.decoder.decode(rows);
    this.lastDecodeMs = ms;
    for (const m of rows) if (geos.has(m.id)) this.putMask(m, geos.get(m.id));
    if (errors.length) this.msg(`${errors.length} mask(s) could not be shown (${errors[0].error}); the others are fine`);
    return rows.filter((m) => geos.has(m.id));
  }

  // m: the API's mask; geo: its geometry when new or changed (else the kept one)
  putMask(m, geo = null) {
    const old = this.masks.get(m.id);
    if (!geo && !old) geo = geoFromCounts(typeof m.rle.counts === "string" ? countsFromString(m.rle.counts) : m.rle.counts, m.rle.size[0], m.bbox);
    const entry = old ? Object.assign(old, { data: m }) : { data: m, rgb: colourOf(m.id) };
    if (geo) { entry.geo = geo; entry.paths = null; }
    this.masks.set(m.id, entry);
    this.maskRev++;
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
    this.viewport.resize(this.canvas.width, this.canvas.height);
    if (!this.W) return;
    this.viewChanged();
  }

  viewChanged() {
    const v = this.viewport;
    this.view = v;
    Object.assign(this.canvas.dataset, { scale: v.s, ox: v.ox, oy: v.oy });
    this.maybeLoadFull();
    this.draw();
  }

  screenOf(e) {
    const r = this.canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * (this.canvas.width / r.width), (e.clientY - r.top) * (this.canvas.height / r.height)];
  }

  toFull(e) { return this.viewport.toFull(...this.screenOf(e)); }

  inside([x, y]) { return x >= 0 && y >= 0 && x < this.W && y < this.H; }

  // Masks whose status is shown (proposed / accepted), whatever the visibility toggles.
  visibleMasks() {
    return [...this.masks.values()].filter((m) => VISIBLE.has(m.data.status));
  }

  isShown(m) { return VISIBLE.has(m.data.status) && !this.hidden.has(m.data.id); }

  // Masks drawn on the canvas: shown status and not hidden from the list.
  shownMasks() { return this.visibleMasks().filter((m) => !this.hidden.has(m.data.id)); }

  // Ids of the drawn masks under full-res point p, smallest (a part) first.
  under([x, y]) {
    return this.shownMasks().filter((m) => geoHas(m.geo, x, y)).sort((a, b) => a.data.area - b.data.area).map((m) => m.data.id);
  }

  hit(p) { const ids = this.under(p); return ids.length ? ids[0] : null; }

  // --- drawing ---------------------------------------------------------------------------
  draw() {
    if (!this.view || !this.bitmap) return;
    this.renderer.draw(this);
    this.minimap.draw();
    for (const b of this.root.querySelectorAll(".toolbar button[data-act]")) {
      const a = b.dataset.act;
      b.setAttribute("aria-pressed", String((a === "brush" && this.tool === "brush") || (a === "erase" && this.tool === "erase") || (a === "new-object" && this.newMode)));
    }
    const draftLabel = this.draft ? ` · label: ${this.draft.label || this.labelsUI.newLabel() || "none"}` : "";
    this.$("#mode").textContent = this.submitted ? "submitted" : this.draft ? `${this.draft.target === "fix" ? "fixing" : "new object"} · ${this.tool}${draftLabel}` : `${this.newMode ? "new object: click" : "review"} · ${this.tool}`;
  }

  updateList() {
    const items = [...this.masks.values()].filter((m) => VISIBLE.has(m.data.status) || m.data.status === "rejected");
    this.list.render(items, { selected: this.selected, next: this.nextTarget, hidden: this.hidden });
    decorateList(this);
  }

  toggleMask(id) {
    if (this.hidden.has(id)) this.hidden.delete(id); else this.hidden.add(id);
    this.maskRev++;
    this.updateList(); this.draw();
  }

  // --- selection -------------------------------------------------------------------------
  select(id, log = true) {
    this.selected = id;
    if (id != null && log) this.emit(K.MASK_SELECT, { mask_id: id });
    this.pickNextTarget();
    this.updateList();
    this.draw();
  }

  // The proposal J goes to: the largest remaining proposal other than the selection.
  pickNextTarget() {
    const props = this.shownMasks().filter((m) => m.data.status === "proposed" && m.data.id !== this.selected)
      .sort((a, b) => b.data.area - a.data.area);
    this.nextTarget = props.length ? props[0].data.id : null;
  }

  selectNextProposal() {
    const props = this.shownMasks().filter((m) => m.data.status === "proposed").sort((a, b) => b.data.area - a.data.area);
    this.selected = props.length ? props[0].data.id : null;
    this.pickNextTarget();
  }

  goNext() {
    if (this.nextTarget == null) { this.msg("no proposal left to review"); return; }
    this.select(this.nextTarget);
  }

  // --- mouse -----------------------------------------------------------------------------
  bindCanvas() {
    const c = this.canvas;
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("wheel", (e) => {
      if (!this.W) return;
      e.preventDefault();
      const [sx, sy] = this.screenOf(e);
      this.viewport.zoomBy(Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)), sx, sy);
      this.viewChanged();
    }, { passive: false });
    c.addEventListener("mousedown", (e) => {
      if (!this.view) return;
      c.focus();
      if (e.button === 1 || (e.button === 0 && this.spaceDown)) { // pan
        e.preventDefault();
        this.pan = { x: e.clientX, y: e.clientY };
        return;
      }
      if (this.submitted) return;
      const p = this.toFull(e);
      this.drag = { start: p, end: p, button: e.button, alt: e.altKey, ctrl: e.ctrlKey || e.metaKey, shift: e.shiftKey, sx: e.clientX, sy: e.clientY, box: false };
      if (this.tool !== "prompt" && e.button === 0) { this.strokeStart(); this.paint(p); this.draw(); }
    });
    c.addEventListener("mousemove", (e) => {
      if (!this.view) return;
      if (this.pan) {
        this.viewport.panBy(e.clientX - this.pan.x, e.clientY - this.pan.y);
        this.pan = { x: e.clientX, y: e.clientY };
        this.viewChanged();
        return;
      }
      const p = this.toFull(e);
      this.cursor = p;
      this.cursorScreen = this.screenOf(e);
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
    this.onMouseUp = (e) => this.mouseUp(e);
    window.addEventListener("mouseup", this.onMouseUp);
  }

  mouseUp(e) {
    if (this.pan) { this.pan = null; return; }
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
      const forceNew = d.ctrl || d.shift || this.newMode;
      if (!forceNew) {
        const ids = this.under(d.start);
        if (ids.length && this.cycle(ids, d)) return;
      }
      if (!positive) return;
      this.newMode = false;
      this.lastClick = null;
    }
    this.prompt({ point: [d.start[0], d.start[1], positive ? 1 : 0] });
  }

  // Repeated clicks at the same spot: smallest mask -> next larger -> ... -> a new object.
  // Returns true when the click selected a mask (false: start a new object here).
  cycle(ids, d) {
    const last = this.lastClick;
    const same = last && Math.hypot(d.sx - last.sx, d.sy - last.sy) <= SAME_SPOT_PX && last.ids.join() === ids.join() && this.selected === ids[last.i];
    const i = same ? last.i + 1 : 0;
    if (i >= ids.length) { this.lastClick = null; this.select(null, false); return false; }
    this.lastClick = { sx: d.sx, sy: d.sy, ids, i };
    this.select(ids[i]);
    if (ids.length > 1) this.msg(`mask ${i + 1} of ${ids.length} under the cursor${i + 1 < ids.length ? " — click again for the larger one" : " — click again to start a new object here"}`);
    return true;
  }

  // --- objects: prompts, preview, commit -------------------------------------------------
  startDraft(target, fixOf = null) {
    const base = fixOf != null ? this.masks.get(fixOf) : null;
    this.draft = {
      target, fixOf, points: [], box: null, maskInputId: null, score: null, clicks: 0,
      geo: base ? base.geo : null, crop: null, rle: base ? base.data.rle : null, dabs: [],
      label: base ? base.data.label : null, useStored: base != null,
    };
  }

  startFix() {
    const id = this.selected;
    if (id == null) { this.msg("select a mask to fix"); return; }
    this.startDraft("fix", id);
    this.emit(K.FIX_START, { mask_id: id, payload: { mask_id: id } });
    this.msg(`fixing #${id}: click to refine, B/E to paint, Enter to save, Esc to cancel`);
    this.draw();
  }

  setTool(tool) { this.tool = this.tool === tool ? "prompt" : tool; this.draw(); }

  async prompt({ point, box }) {
    if (!this.draft) this.startDraft("new");
    const d = this.draft;
    const t = performance.now();
    performance.mark("de:prompt");
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
      d.geo = geoFromCounts(typeof r.rle.counts === "string" ? countsFromString(r.rle.counts) : r.rle.counts, r.rle.size[0], r.bbox);
      d.rle = r.rle; // committed as is unless the brush changes it
      d.crop = null;
      d.score = r.score;
      d.maskInputId = r.mask_input_id;
      this.decoded = seq;
      this.msg(`preview: ${r.area} px, score ${r.score.toFixed(2)} (${Math.round(r.decode_ms)} ms) — Enter commits`);
      this.draw();
      performance.mark("de:preview");
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
    const d = this.draft;
    if (!d.crop) d.crop = d.geo ? cropFromGeo(d.geo) : { x0: 0, y0: 0, w: 0, h: 0, bits: new Uint8Array(0) };
    this.stroke = { mode: this.tool === "brush" ? "paint" : "erase" };
  }

  // One brush dab: the exact bits change at once; the screen shows the dab on the draft
  // layer until the stroke ends (no re-tracing of the whole mask per mouse move).
  paint([x, y]) {
    const d = this.draft;
    if (!d || !this.stroke) return;
    const r = this.brushPx / this.view.s, value = this.tool === "brush" ? 1 : 0;
    d.crop = paintDisc(d.crop, x, y, r, value, this.W, this.H);
    d.dabs.push([x, y, r, value]);
    d.rle = null;
  }

  strokeEnd() {
    if (!this.stroke) return;
    const d = this.draft;
    this.emit(K.BRUSH, { mask_id: d.fixOf, payload: { mode: this.stroke.mode, radius: this.brushPx / this.view.s } });
    this.stroke = null;
    d.brushed = true;
    d.geo = geoFromCrop(d.crop);
    d.paths = null;
    d.dabs = [];
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
    performance.mark("de:commit-start");
    const empty = d.rle ? !d.geo || geoArea(d.geo) === 0 : !d.crop || !d.crop.w || cropArea(d.crop) === 0;
    if (empty) { this.msg("nothing to commit: the mask is empty"); return; }
    const rle = d.rle || encodeCrop(d.crop, this.H, this.W);
    const label = d.label || this.labelsUI.newLabel();
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
      this.putMask(m, d.geo && !d.crop ? d.geo : geoFromCrop(d.crop));
      this.emit(K.OBJECT_COMMIT, { t, mask_id: m.id, payload: { parent_id: m.parent_id, label: m.label, clicks: d.clicks } });
      this.draft = null;
      this.select(m.id, false);
      performance.mark("de:commit");
      this.msg(`object #${m.id} saved${m.label ? ` as ${m.label}` : " — press 1-9 or L to label it"}`);
    });
  }

  // --- review decisions ------------------------------------------------------------------
  // The selection stays on the mask acted on (so a number key right after labels it); the
  // next proposal is marked "next" and J (or the Next button) moves there.
  async decide(kind) {
    const id = this.selected;
    const m = id != null ? this.masks.get(id) : null;
    if (!m) { this.msg("select a mask first (click it, or J for the next proposal)"); return; }
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
      this.pickNextTarget();
      const now = this.masks.get(id).data.status;
      this.msg(`#${id} ${now}${this.nextTarget != null ? ` — J: next proposal #${this.nextTarget}` : " — no proposal left"}`);
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
      this.pickNextTarget();
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
      const fresh = await this.addMasks(data.masks.filter((m) => !this.masks.has(m.id)));
      this.revealed = true;
      this.$("#reveal").disabled = true;
      if (this.selected == null) this.selectNextProposal(); else this.pickNextTarget();
      this.updateList(); this.draw();
      this.emit(K.REVEAL_LESS_CONFIDENT, { t, payload: { mask_ids: fresh.map((m) => m.id) } });
      const sent = await this.ev.drain(5000);
      this.msg(`${fresh.length} less confident proposal(s) shown${sent ? "" : " (the reveal event is not saved yet; it is retried)"}`);
    });
  }

  // Number keys, chips and the typed label: label the object being drawn, else the
  // selected mask; with neither, nothing is labelled (no hidden "current label").
  async applyLabel(label) {
    if (!label) return;
    if (this.labels.length && !this.labels.includes(label)) { this.msg(`"${label}" is not in the taxonomy`); return; }
    if (this.draft) { this.draft.label = label; this.msg(`the object will be labelled ${label}`); this.draw(); return; }
    const m = this.selected != null ? this.masks.get(this.selected) : null;
    if (!m) { this.msg(`select a mask to label it ${label} (for new objects, choose "Label for new objects")`); return; }
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

  // The label box (L): labels the selection; with nothing selected it sets the label for
  // new objects, visibly, in its select.
  typedLabel(label) {
    if (!label) return;
    if (!this.draft && this.selected == null && this.labels.includes(label)) {
      this.labelsUI.newSel.value = label;
      this.msg(`new objects will be labelled ${label}`);
      this.draw();
      return;
    }
    this.applyLabel(label);
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
      const want = undo ? e.prev : e.next;
      // all masks of the step in one request (an accept-all of 56 masks is one undo)
      const changes = e.ids.map((id, i) => ({ mask_id: id, version: this.masks.get(id).data.version, status: want[i] }));
      const rows = await api("POST", `/api/images/${this.image.id}/masks/bulk-status`, { lease_id: this.task.lease_id, changes });
      for (const r of rows) this.putMask(r);
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
      this.pickNextTarget();
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
    const tag = e.target && e.target.tagName;
    const k = e.key;
    const toggle = tag === "INPUT" && (e.target.type === "checkbox" || e.target.type === "range");
    if ((tag === "INPUT" && !toggle) || tag === "SELECT" || tag === "TEXTAREA") return; // typing
    if (toggle && /^(Arrow|Page|Home|End| )/.test(k)) return; // the slider's / checkbox's own keys
    if (tag === "BUTTON" && (k === "Enter" || k === " ")) return; // the focused button's own activation
    if (k === "Tab") return; // focus moves on: no keyboard trap
    const ctrl = e.ctrlKey || e.metaKey;
    const handled = () => e.preventDefault();
    this.lastActivity = performance.now();
    if (k === "?") { handled(); this.toggleHelp(); return; }
    if (k === "Escape") {
      handled();
      if (!this.$("#help").hidden) this.toggleHelp(false);
      else if (this.draft) this.cancelDraft();
      else if (this.newMode) { this.newMode = false; this.draw(); }
      else this.select(null, false);
      return;
    }
    if (ctrl && k === "Enter") { handled(); this.submit(); return; }
    if (ctrl && (k === "z" || k === "Z")) { handled(); this.undo(e.shiftKey); return; }
    if (ctrl && (k === "y" || k === "Y")) { handled(); this.undo(true); return; }
    if (ctrl) return;
    // view keys work before and after submit
    const at = this.cursorScreen || [this.canvas.width / 2, this.canvas.height / 2];
    if (k === "+" || k === "=") { handled(); this.viewport.zoomBy(1.5, ...at); this.viewChanged(); return; }
    if (k === "-" || k === "_") { handled(); this.viewport.zoomBy(1 / 1.5, ...at); this.viewChanged(); return; }
    if (k === "0") { handled(); this.viewport.fit(); this.viewChanged(); return; }
    if (k === "z" || k === "Z") { handled(); this.viewport.actualSize(...at); this.viewChanged(); return; }
    if (k === "h" || k === "H") { handled(); if (!this.hideAll) { this.hideAll = true; this.draw(); } return; }
    if (k === "o" || k === "O") { handled(); this.outlineOnly = !this.outlineOnly; this.$("#outline").checked = this.outlineOnly; this.draw(); return; }
    if (k === "p" || k === "P") { handled(); previous(this); return; }
    if (k === "F" && e.shiftKey) { handled(); flag(this); return; }
    if (this.submitted) {
      if (k === "n" || k === "N" || k === " ") { handled(); this.next(); }
      return;
    }
    if (k === "s" || k === "S") { handled(); skip(this); return; }
    if (k === " ") { handled(); this.spaceDown = true; return; } // hold + drag: pan
    if (k === "Enter") { handled(); this.commit(); return; }
    if (k === "A" && e.shiftKey) { handled(); this.acceptAll(); return; }
    if (k === "m" || k === "M") { handled(); this.reveal(); return; }
    if (k === "a") { handled(); this.decide("accept"); return; }
    if (k === "x" || k === "X") { handled(); this.decide("reject"); return; }
    if (k === "j" || k === "J") { handled(); this.goNext(); return; }
    if (k === "f" || k === "F") { handled(); this.startFix(); return; }
    if (k === "b" || k === "B") { handled(); this.setTool("brush"); return; }
    if (k === "e" || k === "E") { handled(); this.setTool("erase"); return; }
    if (k === "[") { handled(); this.brushPx = Math.max(2, this.brushPx - 2); this.draw(); return; }
    if (k === "]") { handled(); this.brushPx = Math.min(80, this.brushPx + 2); this.draw(); return; }
    if (k === "l" || k === "L") { handled(); this.$("#label").focus(); this.$("#label").select(); return; }
    if (/^[1-9]$/.test(k)) {
      const label = this.labelsUI.forKey(Number(k));
      if (label) { handled(); this.applyLabel(label); }
    }
  }

  keyUp(e) {
    if (e.key === " ") this.spaceDown = false;
    if ((e.key === "h" || e.key === "H") && this.hideAll) { this.hideAll = false; this.draw(); }
  }
}
