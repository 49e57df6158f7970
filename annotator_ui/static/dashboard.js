// Flywheel dashboard: figures per round and arm (GET /api/metrics) and PNG plots.
// Needs a reviewer or admin login (the app's login form and session cookie).

import { api } from "./js/api.js";
import { esc } from "./js/html.js";
import { ensureLogin } from "./js/login.js";

const $ = (id) => document.getElementById(id);

async function getJSON(url) {
  try {
    return await api("GET", url);
  } catch (err) {
    if (err.status === 403) throw new Error("The dashboard is for reviewers and admins.");
    throw err;
  }
}

function fmt(v) {
  if (v.value === null) return "–";
  const x = Number(v.value).toPrecision(3);
  if (v.lo === null) return x;
  return `${x} <small>[${Number(v.lo).toPrecision(3)}, ${Number(v.hi).toPrecision(3)}]</small>`;
}

function renderTable(m) {
  const names = Object.keys(m.labels);
  const head = names.map((n) => `<th>${esc(m.labels[n])}</th>`).join("");
  const rows = m.groups.map((g) => {
    const cells = names.map((n) => `<td>${fmt(g.figures[n])}</td>`).join("");
    const round = g.round === null ? "no round" : g.round;
    return `<tr><td>${round}</td><td>${g.arm}</td><td>${g.images_done}</td>${cells}` +
      `<td>${num(g.released_s, 1)}</td><td>${num(g.imported_s, 1)}</td></tr>`;
  }).join("");
  $("table").innerHTML = m.groups.length
    ? `<table><thead><tr><th>round</th><th>arm</th><th>images</th>${head}` +
      `<th>s on unfinished images</th><th>s imported (Label Studio)</th></tr></thead><tbody>${rows}</tbody></table>`
    : "<p>No annotation work recorded yet.</p>";
  $("notes").innerHTML = (m.notes || []).map((n) => `<p>${n.replace(/</g, "&lt;")}</p>`).join("");
}

function idleQuery() {
  const v = Number($("idle").value);
  return v > 0 ? `&idle_seconds=${v}` : "";
}

function renderPlots(m, project) {
  const q = `project=${encodeURIComponent(project)}${idleQuery()}&t=${Date.now()}`;
  $("plots").innerHTML = Object.entries(m.plots)
    .map(([fig, title]) => `<img alt="${esc(title)}" src="/api/metrics/plots/${fig}.png?${q}">`)
    .join("");
}

const projectIds = new Map();

const num = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

function renderAgreement(a) {
  const stages = [["generalist", "generalist keep/drop"], ["specialist", "specialist keep/drop"],
                  ["specialist_rating", "specialist rating"]];
  const rows = stages.map(([key, title]) => {
    const s = a[key] || {};
    const cohen = (s.pairs || []).map((p) => num(p.cohen)).join(", ") || "–";
    return `<tr><td style="text-align:left">${title}</td><td>${s.items ?? 0}</td><td>${s.raters ?? 0}</td>` +
      `<td>${num(s.fleiss)}</td><td>${cohen}</td><td>${num(s.percent_agreement)}</td></tr>`;
  }).join("");
  $("agreement").innerHTML = `<h2>Curation agreement</h2><table><thead><tr><th>stage</th>` +
    `<th>overlapping images</th><th>curators</th><th>Fleiss' κ</th><th>Cohen's κ per pair</th>` +
    `<th>% agreement</th></tr></thead><tbody>${rows}</tbody></table>`;
}

async function loadAgreement(project) {
  const id = projectIds.get(project);
  if (id === undefined) return;
  try {
    renderAgreement(await getJSON(`/api/curation/projects/${id}/agreement`));
  } catch (err) {
    $("agreement").textContent = `Curation agreement: ${err.message}`;
  }
}

function ago(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

async function loadWorkers() {
  // pre-fill workers (GET /api/workers): heartbeat, totals and live claims of each run
  try {
    const ws = await getJSON("/api/workers");
    const rows = ws.map((w) =>
      `<tr><td style="text-align:left">${esc(w.worker_id)}</td><td>${esc(w.backend)}</td>` +
      `<td>${w.alive ? "alive" : "<b>silent</b>"}</td><td>${ago(w.seconds_since_seen)}</td>` +
      `<td>${w.passes}</td><td>${w.images_done}</td><td>${w.images_failed}</td>` +
      `<td>${w.live_claims}</td></tr>`).join("");
    $("workers").innerHTML = "<h2>Pre-fill workers</h2>" + (ws.length
      ? `<table><thead><tr><th>worker</th><th>backend</th><th>state</th><th>last heartbeat</th>` +
        `<th>passes</th><th>images done</th><th>failed</th><th>claims held</th></tr></thead>` +
        `<tbody>${rows}</tbody></table>`
      : "<p>No worker seen in the last day (start one with <code>dataengine worker</code>).</p>");
  } catch (err) {
    $("workers").textContent = `Pre-fill workers: ${err.message}`;
  }
}

async function load() {
  const project = $("project").value;
  if (!project) return;
  $("status").textContent = "";
  $("report").href = `/api/metrics/report.html?project=${encodeURIComponent(project)}${idleQuery()}`;
  try {
    const m = await getJSON(`/api/metrics?project=${encodeURIComponent(project)}${idleQuery()}`);
    $("meta").textContent = `${m.rounds.length} round(s); idle cap ${m.idle_s} s; ` +
      `95% cluster-bootstrap intervals over images (${m.bootstrap.reps} resamples).`;
    renderTable(m);
    renderPlots(m, project);
    await loadAgreement(project);
    await loadWorkers();
  } catch (err) {
    $("status").textContent = err.message;
  }
}

async function init() {
  await ensureLogin($("login-slot"));
  $("login-slot").innerHTML = "";
  try {
    const projects = await getJSON("/api/metrics/projects");
    for (const p of projects) projectIds.set(p.name, p.id);
    const wanted = new URLSearchParams(location.search).get("project");
    $("project").innerHTML = projects
      .map((p) => `<option ${p.name === wanted ? "selected" : ""}>${esc(p.name)}</option>`)
      .join("");
    if (!projects.length) $("status").textContent = "No projects yet.";
  } catch (err) {
    $("status").textContent = err.message;
    return;
  }
  $("project").addEventListener("change", load);
  $("refresh").addEventListener("click", load);
  $("idle").addEventListener("change", load);
  await load();
}

init();
