// Nothing lost: the object being drawn survives a lost reservation (it travels in the
// server-side draft and is re-applied when the image is opened again), a session expiry
// (kept in sessionStorage, restored after login on the same image), and the network going
// away (mask changes that could not be sent are queued in localStorage and replayed in
// order when the browser is online again; add/fix carry their Idempotency-Key, so a
// replay never makes a second mask). Per-click undo while drawing lives here too.

import { api } from "./api.js";
import { K } from "./events.js";

const EXPIRED = "dataengine.session_expired.v1"; // sessionStorage: {hash, image_id, object}
const QUEUE = "dataengine.offline_queue.v1"; // localStorage: [{method, url, body, key, image_id}]

// The object being drawn, as the server keeps it in the draft (points, box, target).
export function objectState(review) {
  const d = review.draft;
  if (!d || (!d.points.length && !d.box)) return null;
  return { target: d.target, fix_of: d.fixOf, points: d.points, box: d.box, label: d.label || null };
}

// The draft sent with heartbeats, skip and release: the object being drawn (null when
// none, which clears an older one; the server keeps pending_ops of a lost reservation).
export function draftForServer(review) {
  return { object: objectState(review) };
}

// Start drawing `object` again (points and box as they were) and decode its preview.
async function redraw(review, object) {
  if (!object || (!(object.points || []).length && !object.box)) return false;
  const fixOf = object.target === "fix" && review.masks.has(object.fix_of) ? object.fix_of : null;
  review.startDraft(fixOf != null ? "fix" : "new", fixOf);
  const d = review.draft;
  d.points = (object.points || []).map((p) => [Number(p[0]), Number(p[1]), Number(p[2])]);
  d.box = object.box || null;
  d.clicks = d.points.length + (d.box ? 1 : 0);
  if (object.label) d.label = object.label;
  review.draw();
  await review.decode();
  return true;
}

// Mask changes kept in the draft while the reservation was lost (pending_ops), sent again
// under the new one when they still apply. Returns how many were applied.
async function replayOps(review, ops) {
  let applied = 0;
  const lease_id = review.task.lease_id;
  for (const op of ops) {
    const m = op.mask_id != null ? review.masks.get(op.mask_id) : null;
    try {
      if (op.op === "accept" && m && m.data.status === "proposed") {
        review.putMask(await api("POST", `/api/masks/${op.mask_id}/accept`, { version: m.data.version, label: op.label ?? null, lease_id }));
      } else if (op.op === "reject" && m && m.data.status === "proposed") {
        review.putMask(await api("POST", `/api/masks/${op.mask_id}/reject`, { version: m.data.version, lease_id }));
      } else if (op.op === "accept_all_confident") {
        for (const r of await api("POST", `/api/images/${review.image.id}/masks/accept-all-confident`, { lease_id })) review.putMask(r);
      } else if (op.op === "relabel" && m) {
        review.putMask(await api("PATCH", `/api/masks/${op.mask_id}`, { version: m.data.version, label: op.label, lease_id }));
      } else if (op.op === "add" && op.rle) {
        review.putMask(await api("POST", `/api/images/${review.image.id}/masks`, { rle: op.rle, label: op.label ?? null, score: op.score ?? null, lease_id }));
      } else if (op.op === "fix" && op.rle && m && m.data.status !== "superseded") {
        const r = await api("POST", `/api/masks/${op.mask_id}/fix`, { version: m.data.version, rle: op.rle, label: op.label ?? null, score: op.score ?? null, lease_id });
        m.data.status = "superseded";
        review.putMask(r);
      } else continue;
      applied++;
    } catch { /* no longer applies (changed meanwhile): skip it */ }
  }
  return applied;
}

// On opening an image: re-apply what a lost reservation or an expired session left.
export async function reapply(review, task) {
  const said = [];
  const draft = task.draft || {};
  const ops = Array.isArray(draft.pending_ops) ? draft.pending_ops : [];
  if (ops.length) {
    const n = await replayOps(review, ops);
    said.push(`${n} of ${ops.length} unsaved change(s) from your last visit re-applied`);
  }
  let object = draft.object || null;
  const stash = takeExpired(review.image.id);
  if (stash && stash.object) object = stash.object;
  if (object && (await redraw(review, object))) said.push("your unfinished object is back: Enter saves it, Esc drops it");
  if (ops.length || draft.object) { // the draft is used up: don't apply it twice
    await api("POST", `/api/tasks/${task.lease_id}/heartbeat`, { draft: { object: null } }).catch(() => null);
  }
  if (said.length) { review.msg(`${said.join("; ")}.`); review.updateList(); review.draw(); }
}

// Reload the image's masks from the server (after a conflict: the latest state).
export async function refreshMasks(review) {
  const data = await api("GET", `/api/images/${review.image.id}/masks${review.revealed ? "?include=less_confident" : ""}`);
  for (const m of data.masks) review.putMask(m);
  review.updateList(); review.draw();
}

// --- session expiry ---------------------------------------------------------------------

// Called (via the "de:session-expired" event api.js sends on a 401) before the login page:
// keep where we were and the object being drawn.
export function stashOnExpiry(review) {
  const stash = { hash: location.hash, image_id: review && review.image ? review.image.id : null, object: review ? objectState(review) : null };
  try { sessionStorage.setItem(EXPIRED, JSON.stringify(stash)); } catch { /* storage off: nothing kept */ }
}

// The page to return to after login (the image's route), or null.
export function returnHash() {
  try {
    const s = JSON.parse(sessionStorage.getItem(EXPIRED) || "null");
    return s && s.hash && s.hash !== "#/login" ? s.hash : null;
  } catch { return null; }
}

function takeExpired(imageId) {
  try {
    const s = JSON.parse(sessionStorage.getItem(EXPIRED) || "null");
    sessionStorage.removeItem(EXPIRED); // used once, on the first image opened after login
    return s && s.image_id === imageId ? s : null;
  } catch { return null; }
}

// --- per-click undo while drawing ---------------------------------------------------------

// Ctrl+Z while drawing: drop the last click (or the box) and decode again; true when done,
// false when nothing would be left (the caller cancels the object then).
export function undoLastPrompt(review) {
  const d = review.draft;
  if (!d || d.brushed) return false;
  const n = d.points.length + (d.box ? 1 : 0);
  if (n <= 1) return false;
  if (d.points.length) d.points.pop(); else d.box = null;
  d.maskInputId = null; // the low-res input of the last decode knew the dropped click
  review.emit(K.PROMPT_UNDO, { mask_id: d.fixOf, payload: { left: n - 1 } });
  review.msg(`last click removed (${n - 1} left)`);
  review.draw();
  review.decode();
  return true;
}

// --- offline queue ------------------------------------------------------------------------

function loadQueue() { try { return JSON.parse(localStorage.getItem(QUEUE) || "[]"); } catch { return []; } }
function saveQueue(q) { try { localStorage.setItem(QUEUE, JSON.stringify(q)); } catch { /* quota */ } }

export function queuedCount() { return loadQueue().length; }

// A mask change that failed for lack of network (err.request from api.js): keep it.
export function enqueue(review, err) {
  if (!err || err.status !== 0 || !err.request || err.request.method === "GET") return false;
  const q = loadQueue();
  q.push({ ...err.request, image_id: review.image ? review.image.id : null });
  saveQueue(q);
  return true;
}

// Send the queued changes in order; stops at the first network failure (kept for later).
export async function replayQueue(review) {
  let q = loadQueue();
  let sent = 0;
  while (q.length) {
    const r = q[0];
    try {
      await api(r.method, r.url, r.body, { idempotencyKey: r.key || null, retries: 0 });
    } catch (err) {
      if (err.status === 0) break; // still offline
      // refused now (changed meanwhile): dropped, the reload below shows the truth
    }
    q = q.slice(1); saveQueue(q); sent++;
  }
  if (sent && review && review.image) {
    const data = await api("GET", `/api/images/${review.image.id}/masks`).catch(() => null);
    if (data) { for (const m of data.masks) review.putMask(m); review.updateList(); review.draw(); }
    review.msg(`back online: ${sent} change(s) saved`);
  }
  return sent;
}

// Wire the browser's online/offline and the 401 signal to the review on screen.
export function attachRecovery(getReview) {
  window.addEventListener("online", () => replayQueue(getReview()));
  window.addEventListener("de:session-expired", () => stashOnExpiry(getReview()));
}
