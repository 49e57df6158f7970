// Flagged images (reviewers, admins): what annotators flagged, with their reason, newest
// first; "Resolve" closes a flag with an optional note. GET /api/projects/{id}/flags.

import { api } from "./js/api.js";
import { esc } from "./js/html.js";
import { ensureLogin } from "./js/login.js";
import { plainError } from "./js/notify.js";

const $ = (id) => document.getElementById(id);

function card(f) {
  const when = new Date(f.created_at).toLocaleString();
  const done = f.resolved_at
    ? `<p class="who">resolved ${esc(new Date(f.resolved_at).toLocaleString())}${f.resolution ? `: ${esc(f.resolution)}` : ""}</p>`
    : `<label>Note <input data-note="${f.id}" maxlength="2000"></label> <button type="button" data-resolve="${f.id}">Resolve</button>`;
  return `<li data-flag="${f.id}">
    <img alt="image ${f.image_id}" src="/api/curation/images/${f.image_id}/thumb?size=384" loading="lazy">
    <p class="reason">${esc(f.reason)}</p>
    <p class="who">image ${f.image_id} (${f.width}×${f.height}) · flagged by ${esc(f.user)} · ${esc(when)}</p>
    ${done}</li>`;
}

async function load() {
  const pid = $("project").value;
  if (!pid) return;
  $("status").textContent = "";
  try {
    const rows = await api("GET", `/api/projects/${pid}/flags?resolved=${$("resolved").checked}`);
    $("flags").innerHTML = rows.map(card).join("") || "<li>No flagged images.</li>";
    for (const b of document.querySelectorAll("button[data-resolve]")) {
      b.onclick = async () => {
        const id = b.dataset.resolve;
        try {
          await api("POST", `/api/flags/${id}/resolve`, { resolution: document.querySelector(`input[data-note="${id}"]`).value || null });
          await load();
        } catch (err) { $("status").textContent = plainError(err); }
      };
    }
  } catch (err) {
    $("status").textContent = err.status === 403 ? "This page is for reviewers and admins." : plainError(err);
  }
}

async function main() {
  await ensureLogin($("login-slot"));
  $("login-slot").innerHTML = "";
  const projects = await api("GET", "/api/projects");
  $("project").innerHTML = projects.map((p) => `<option value="${p.id}">${esc(p.name)}</option>`).join("");
  const want = new URLSearchParams(location.search).get("project");
  if (want) $("project").value = want;
  $("project").onchange = load;
  $("resolved").onchange = load;
  await load();
}

main().catch((err) => { $("status").textContent = plainError(err); });
