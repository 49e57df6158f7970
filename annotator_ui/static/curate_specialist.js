// Specialist stage: only generalist keeps, one large image at a time; rating 1-5, photographic
// tags (good / bad per category), a caption pre-drafted from the mask labels that the
// specialist rewrites, keep / drop, undo. The next image is fetched and preloaded meanwhile.

import { api } from "./js/api.js";
import { chooseProject, setStatus } from "./curate_common.js";
import { esc } from "./js/html.js";
import { ensureLogin } from "./js/login.js";

const main = document.getElementById("main");
let projectId = null;
let current = null;   // item on screen, with .rating, .tags (Set)
let upcoming = [];    // preloaded items
let categories = [];
let decided = 0;

async function fetchMore(exclude) {
  const page = await api("GET", `/api/curation/projects/${projectId}/specialist?limit=2&exclude=${exclude.join(",")}`);
  categories = page.tag_categories;
  for (const it of page.items) {
    const img = new Image();
    img.src = it.large;
  }
  return page.items;
}

async function advance() {
  if (!upcoming.length) upcoming = await fetchMore(current ? [current.image_id] : []);
  current = upcoming.shift() || null;
  if (current) {
    current.rating = null;
    current.tags = new Set();
    current.text = current.caption || current.draft_caption || "";
  }
  render();
  if (current && !upcoming.length) {
    fetchMore([current.image_id]).then((items) => { upcoming = items.filter((x) => x.image_id !== current?.image_id); }).catch(() => null);
  }
}

function render() {
  if (!current) {
    main.innerHTML = `<div class="panel"><h2>All done</h2><p>No generalist keeps are waiting for you.</p></div>`;
    return;
  }
  const c = current;
  const sig = (c.signal_words || []).map((w) => `<span class="sigword" title="${esc(w.signal)} = ${Number(w.value).toFixed(2)}">${esc(w.text)}</span>`).join("<br>");
  main.innerHTML = `
    <div class="spec">
      <div class="view"><img id="large" src="${esc(c.large)}" alt="image ${c.image_id}"></div>
      <div class="side">
        <div><h3>Rating</h3><div class="stars">${[1, 2, 3, 4, 5].map((r) => `<button type="button" data-r="${r}" class="${c.rating === r ? "on" : ""}">${r}</button>`).join(" ")}</div></div>
        <div><h3>Tags</h3><div class="tags">${categories.map((cat) => `
          <span>${esc(cat)}</span>
          <button type="button" class="good ${c.tags.has(`${cat}:good`) ? "on" : ""}" data-tag="${cat}:good">good</button>
          <button type="button" class="bad ${c.tags.has(`${cat}:bad`) ? "on" : ""}" data-tag="${cat}:bad">bad</button>`).join("")}</div></div>
        <div><h3>Caption</h3>
          <textarea id="caption" placeholder="Describe the image in your words">${esc(c.text)}</textarea>
          <div class="draft">draft from masks: ${esc(c.draft_caption)}${c.labels?.length ? ` (labels: ${c.labels.map(esc).join(", ")})` : ""}</div></div>
        <div class="signals">image ${c.image_id}${c.overlap ? " · shown to two specialists" : ""}<br>${sig}</div>
        <div><button class="primary" id="keep" type="button">Keep (K)</button> <button id="drop" type="button">Drop (D)</button> <button id="undo" type="button">Undo (U)</button></div>
      </div>
    </div>`;
  main.querySelectorAll(".stars button").forEach((b) => { b.onclick = () => { c.rating = Number(b.dataset.r); render(); }; });
  main.querySelectorAll(".tags button").forEach((b) => { b.onclick = () => toggleTag(b.dataset.tag); });
  const ta = document.getElementById("caption");
  ta.oninput = () => { c.text = ta.value; };
  document.getElementById("keep").onclick = () => decide("keep");
  document.getElementById("drop").onclick = () => decide("drop");
  document.getElementById("undo").onclick = () => undo();
}

function toggleTag(tag) {
  const [cat] = tag.split(":");
  const had = current.tags.has(tag);
  current.tags.delete(`${cat}:good`);
  current.tags.delete(`${cat}:bad`);
  if (!had) current.tags.add(tag);
  render();
}

async function decide(decision) {
  const c = current;
  if (!c) return;
  const text = c.text.trim();
  if (decision === "keep" && (!c.rating || !text)) {
    setStatus("a keep needs a rating (1-5) and a caption");
    return;
  }
  try {
    await api("POST", "/api/curation/decisions", {
      image_id: c.image_id, stage: "specialist", decision,
      rating: decision === "keep" ? c.rating : c.rating || null,
      tags: [...c.tags], caption: decision === "keep" ? text : null,
    });
    decided += 1;
    document.getElementById("rate").textContent = `${decided} decided`;
    setStatus(`${decision} image ${c.image_id}`);
    await advance();
  } catch (err) {
    setStatus(`not saved: ${err.message}`);
  }
}

async function undo() {
  const out = await api("POST", "/api/curation/undo", { project_id: projectId, stage: "specialist" });
  if (!out.image_id) { setStatus("nothing to undo"); return; }
  if (current) upcoming.unshift(current);
  const page = await fetchMore([]);  // the undone image is ours again and comes first
  current = page.find((x) => x.image_id === out.image_id) || page[0] || null;
  if (current) { current.rating = null; current.tags = new Set(); current.text = current.caption || current.draft_caption || ""; }
  upcoming = upcoming.filter((x) => x.image_id !== current?.image_id);
  decided = Math.max(0, decided - 1);
  setStatus(`undid ${out.decision} of image ${out.image_id}`);
  render();
}

document.addEventListener("keydown", (e) => {
  if (projectId === null || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target.tagName === "TEXTAREA" || e.target.tagName === "INPUT") {
    if (e.key === "Escape") e.target.blur();
    return;
  }
  const k = e.key.toLowerCase();
  if (k >= "1" && k <= "5" && current) { current.rating = Number(k); render(); }
  else if (k === "k") decide("keep");
  else if (k === "d") decide("drop");
  else if (k === "u") undo();
  else if (k === "e") document.getElementById("caption")?.focus();
  else return;
  e.preventDefault();
});

async function start() {
  await ensureLogin(main);
  projectId = await chooseProject(main, "Specialist");
  if (projectId === null) return;
  await advance();
}

start().catch((err) => setStatus(err.message));
