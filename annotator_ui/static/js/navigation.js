// Moving on without losing anything: the submit warning (unreviewed confident proposals),
// skip (the image goes to the back of my queue), flag for a reviewer (with a reason),
// previous image, and "restore" on rejected masks in the list. attachNavigation(review)
// adds the buttons and the dialog to the review page; the Review calls confirmSubmit()
// before submitting and decorateList() after drawing its mask list.

import { api } from "./api.js";
import { K } from "./events.js";
import { showError } from "./notify.js";
import { draftForServer } from "./recovery.js";

// A modal dialog: resolves to {ok: bool, value: string|null}. Esc / "cancel" -> ok false.
export function ask(review, { title, text, ok, cancel, reason = false }) {
  const dlg = review.root.querySelector("#navdialog");
  dlg.innerHTML = `
    <form method="dialog">
      <h2 id="navdialog-title"></h2>
      <p id="navdialog-text"></p>
      ${reason ? '<label>Reason <textarea id="navdialog-reason" rows="3" required maxlength="2000"></textarea></label>' : ""}
      <div class="dialog-buttons">
        <button value="cancel" id="navdialog-cancel" type="submit" formnovalidate></button>
        <button value="ok" id="navdialog-ok" class="primary" type="submit"></button>
      </div>
    </form>`;
  dlg.querySelector("#navdialog-title").textContent = title;
  dlg.querySelector("#navdialog-text").textContent = text;
  dlg.querySelector("#navdialog-ok").textContent = ok;
  dlg.querySelector("#navdialog-cancel").textContent = cancel;
  return new Promise((resolve) => {
    dlg.onclose = () => {
      const area = dlg.querySelector("#navdialog-reason");
      resolve({ ok: dlg.returnValue === "ok", value: area ? area.value.trim() : null });
      review.canvas.focus();
    };
    dlg.returnValue = "cancel";
    dlg.showModal();
    (dlg.querySelector("#navdialog-reason") || dlg.querySelector("#navdialog-cancel")).focus();
  });
}

// The confident proposals still waiting for a decision.
export function unreviewed(review) {
  return review.visibleMasks().filter((m) => m.data.status === "proposed" && m.data.confident !== false);
}

// true when the submit may go ahead (nothing unreviewed, or "Submit anyway").
export async function confirmSubmit(review) {
  const left = unreviewed(review);
  if (!left.length) return true;
  const n = left.length;
  const { ok } = await ask(review, {
    title: `${n} suggestion${n === 1 ? "" : "s"} not reviewed yet`,
    text: `${n} confident suggestion${n === 1 ? " is" : "s are"} neither accepted nor rejected. `
      + "Unreviewed suggestions are not kept as objects of this image.",
    ok: "Submit anyway",
    cancel: "Go back",
  });
  if (!ok) {
    review.selected = left.sort((a, b) => b.data.area - a.data.area)[0].data.id;
    review.updateList(); review.draw();
    review.msg(`${n} suggestion(s) left: A accepts, X rejects the selected one.`);
  }
  return ok;
}

async function move(review, fn, what) {
  try {
    await fn();
  } catch (err) {
    showError(review.$("#msg"), err, () => move(review, fn, what));
  }
}

export function skip(review) {
  if (review.submitted) { review.msg("this image is submitted: press N for the next one"); return Promise.resolve(); }
  return move(review, async () => {
    review.emit(K.IMAGE_SKIP, {});
    await api("POST", `/api/tasks/${review.task.lease_id}/skip`, { draft: draftForServer(review) });
    review.ev.flush();
    review.ctx.onNext();
  }, "skip");
}

export async function flag(review) {
  const { ok, value } = await ask(review, {
    title: "Flag this image for a reviewer",
    text: "Say what is wrong (e.g. the image is unclear, objects can't be told apart). The image is then skipped.",
    ok: "Flag and skip",
    cancel: "Cancel",
    reason: true,
  });
  if (!ok || !value) return;
  await move(review, async () => {
    await api("POST", `/api/images/${review.image.id}/flags`, { reason: value, lease_id: review.task.lease_id });
    review.emit(K.IMAGE_FLAG, { payload: { reason: value } });
    review.ctx.setStatus("flagged for a reviewer");
    if (review.submitted) review.ctx.onNext();
    else await skip(review);
  }, "flag");
}

export function previous(review) {
  return move(review, async () => {
    if (!review.submitted) {
      await api("POST", `/api/tasks/${review.task.lease_id}/heartbeat`, { draft: draftForServer(review) }).catch(() => null);
    }
    await api("POST", "/api/tasks/previous", { project_id: review.ctx.projectId });
    review.ev.flush();
    review.ctx.onNext();
  }, "previous");
}

// Un-reject a mask from the list: a rejected proposal becomes a proposal again, a
// withdrawn object becomes accepted again (one revert request, a mask_restore event).
export async function restore(review, id) {
  const m = review.masks.get(id);
  if (!m || m.data.status !== "rejected") return;
  const status = m.data.source === "model" ? "proposed" : "accepted";
  const t = performance.now();
  await review.run(async () => {
    review.putMask(await review.revert(id, status));
    review.emit(K.MASK_RESTORE, { t, mask_id: id, payload: { status } });
    review.pushUndo({ kind: "status", ids: [id], prev: ["rejected"] });
    review.select(id, false);
    review.msg(`#${id} restored`);
  });
}

// After the list is drawn: a "restore" button on every rejected mask.
export function decorateList(review) {
  for (const li of review.root.querySelectorAll("#masklist li")) {
    const m = review.masks.get(Number(li.dataset.mask));
    if (!m || m.data.status !== "rejected") continue;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "restore";
    b.textContent = "restore";
    b.title = "bring this mask back";
    b.onclick = (e) => { e.stopPropagation(); restore(review, m.data.id); };
    li.append(" ", b);
  }
}

// The buttons (Previous / Skip / Flag) and the dialog they use.
export function attachNavigation(review) {
  const bar = document.createElement("div");
  bar.className = "navbar";
  bar.innerHTML = `
    <button id="previous" type="button" title="reopen the image you finished last (P)" aria-keyshortcuts="P">Previous image</button>
    <button id="skip" type="button" title="put this image at the back of your queue (S)" aria-keyshortcuts="S">Skip</button>
    <button id="flag" type="button" title="ask a reviewer to look at this image (Shift+F)" aria-keyshortcuts="Shift+F">Flag for review…</button>`;
  review.$(".side").append(bar);
  const dlg = document.createElement("dialog");
  dlg.id = "navdialog";
  dlg.setAttribute("aria-labelledby", "navdialog-title");
  review.root.querySelector(".review").append(dlg);
  bar.querySelector("#previous").onclick = () => previous(review);
  bar.querySelector("#skip").onclick = () => skip(review);
  bar.querySelector("#flag").onclick = () => flag(review);
}
