// Effort events: every action gets a client UUID, a monotonic timestamp (performance.now(),
// ms), the page visibility and an order number; they are sent in batches and retried until
// the server acknowledges each UUID. Unsent events survive reloads in localStorage.
// Kinds: engine/flywheel/events.py (the server rejects others).

import { uuid4 } from "./api.js";

export const K = {
  SESSION_START: "session_start", IMAGE_OPEN: "image_open", VISIBILITY: "visibility",
  HEARTBEAT: "heartbeat", MASK_SELECT: "mask_select", MASK_ACCEPT: "mask_accept",
  MASK_REJECT: "mask_reject", ACCEPT_ALL_CONFIDENT: "accept_all_confident",
  FIX_START: "fix_start", PROMPT_CLICK: "prompt_click", PROMPT_BOX: "prompt_box",
  BRUSH: "brush", OBJECT_COMMIT: "object_commit", OBJECT_CANCEL: "object_cancel",
  LABEL_SET: "label_set", UNDO: "undo", REDO: "redo", SUBMIT: "submit",
  REVEAL_LESS_CONFIDENT: "reveal_less_confident",
  MASK_RESTORE: "mask_restore", PROMPT_UNDO: "prompt_undo", IMAGE_SKIP: "image_skip",
  IMAGE_FLAG: "image_flag",
};

const STORE = "dataengine.pending_events.v1";
const BATCH = 200;

export class EventLog {
  constructor() {
    this.sessionId = uuid4();
    this.seq = 0;
    this.pending = this.load();
    this.inflight = false;
    this.backoff = 1000;
    this.retryTimer = null;
    this.acked = 0;
    // Visibility events belong to the image on screen; after its submit (context cleared,
    // see stop()) nothing is sent for it until the next image opens (docs/effort.md).
    document.addEventListener("visibilitychange", () => {
      if (this.context.image_id != null) {
        this.emit(K.VISIBILITY, { image_id: this.context.image_id, lease_id: this.context.lease_id, payload: { visible: !document.hidden } });
      }
      if (document.hidden) this.flush();
    });
    window.addEventListener("pagehide", () => this.flush(true));
    setInterval(() => this.flush(), 2000);
    this.context = {};
    if (this.pending.length) this.flush();
  }

  // The image on screen was submitted: its clock is stopped, send nothing more for it.
  stop() { this.context = {}; }

  load() {
    try { return JSON.parse(localStorage.getItem(STORE) || "[]"); } catch { return []; }
  }

  save() {
    try { localStorage.setItem(STORE, JSON.stringify(this.pending)); } catch { /* quota: keep in memory */ }
  }

  // kind: a K value; opts: {image_id, mask_id, lease_id, payload, t (performance.now() ms)}
  emit(kind, opts = {}) {
    const ev = {
      uuid: uuid4(), session_id: this.sessionId, seq: this.seq++, kind,
      client_time: opts.t ?? performance.now(), visible: !document.hidden,
      image_id: opts.image_id ?? null, mask_id: opts.mask_id ?? null,
      lease_id: opts.lease_id ?? null, payload: opts.payload ?? {},
    };
    this.pending.push(ev);
    this.save();
    if (this.pending.length >= 20) this.flush();
    return ev;
  }

  async flush(keepalive = false) {
    if (this.inflight || !this.pending.length || this.retryTimer) return;
    this.inflight = true;
    const batch = this.pending.slice(0, BATCH);
    try {
      const res = await fetch("/api/events", {
        method: "POST", credentials: "same-origin", keepalive,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ events: batch }),
      });
      if (!res.ok) throw new Error(`events: HTTP ${res.status}`);
      const body = await res.json();
      const acked = new Set(body.acknowledged);
      this.pending = this.pending.filter((e) => !acked.has(e.uuid));
      this.acked += acked.size;
      this.save();
      this.backoff = 1000;
      if (body.rejected && body.rejected.length) console.warn("events rejected", body.rejected);
    } catch (err) {
      console.warn("events not sent, retrying", err);
      this.retryTimer = setTimeout(() => { this.retryTimer = null; this.flush(); }, this.backoff);
      this.backoff = Math.min(this.backoff * 2, 30000);
    } finally {
      this.inflight = false;
    }
    if (this.pending.length && !this.retryTimer && this.pending.length >= BATCH) this.flush();
  }

  // Resolve once every event emitted so far was acknowledged (or after timeoutMs).
  async drain(timeoutMs = 10000) {
    const end = performance.now() + timeoutMs;
    while (this.pending.length && performance.now() < end) {
      await this.flush();
      await new Promise((r) => setTimeout(r, 100));
    }
    return this.pending.length === 0;
  }
}
