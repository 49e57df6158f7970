// Generalist stage: a grid of server-made thumbnails; K keep, D drop, U undo, arrows move.
// By mouse: Keep / Drop / Enlarge buttons on every tile, an Undo button, a tile-size slider;
// Enlarge (or Enter, or a double click) opens the image large in a lightbox with Keep / Drop.
// Decisions are posted in order (one at a time, retried); the next page is fetched and its
// thumbnails preloaded while the curator works on this one, so a page swap is instant.

import { api } from "./js/api.js";
import { chooseProject, setStatus } from "./curate_common.js";
import { esc } from "./js/html.js";
import { ensureLogin } from "./js/login.js";

const PAGE = 24;
const main = document.getElementById("main");
let projectId = null;
let items = [];          // current page: {image_id, thumb, overlap, signals, decision}
let cursor = 0;
let nextPage = null;     // Promise of the preloaded next page
const seen = new Map();  // image_id -> item (for undo across pages)
const outbox = [];       // decisions waiting to be posted, in order
let posting = false;
let decided = 0;
const started = performance.now();

function fetchPage(exclude) {
  const ids = exclude.join(",");
  return api("GET", `/api/curation/projects/${projectId}/generalist?limit=${PAGE}&exclude=${ids}`).then((page) => {
    for (const it of page.items) {
      seen.set(it.image_id, it);
      const img = new Image();  // warm the browser cache
      img.src = it.thumb;
    }
    return page;
  });
}

function preload() {
  nextPage = fetchPage(items.map((it) => it.image_id));
  nextPage.catch(() => { nextPage = null; });
}

function render() {
  main.innerHTML = `<div class="grid">${items.map((it, i) => `
    <figure class="tile ${it.decision || ""} ${i === cursor ? "cursor" : ""}" data-i="${i}" data-id="${it.image_id}">
      <img src="${esc(it.thumb)}" alt="image ${it.image_id}" loading="eager" draggable="false">
      ${it.overlap ? '<span class="badge">2×</span>' : ""}
      <figcaption>${it.decision ? esc(it.decision) : ""}</figcaption>
      <div class="tile-actions">
        <button type="button" data-act="keep" aria-label="keep image ${it.image_id}">Keep</button>
        <button type="button" data-act="drop" aria-label="drop image ${it.image_id}">Drop</button>
        <button type="button" data-act="enlarge" aria-label="enlarge image ${it.image_id}">Enlarge</button>
      </div>
    </figure>`).join("")}</div>` + (items.length ? "" : `<div class="panel"><h2>All done</h2><p>No images left for you in this stage.</p></div>`);
  main.querySelectorAll(".tile").forEach((el) => {
    el.onclick = () => { cursor = Number(el.dataset.i); render(); };
    el.ondblclick = () => { cursor = Number(el.dataset.i); enlarge(); };
    el.querySelectorAll("button[data-act]").forEach((b) => {
      b.onclick = (e) => {
        e.stopPropagation();
        cursor = Number(el.dataset.i);
        if (b.dataset.act === "enlarge") enlarge(); else decide(b.dataset.act);
      };
    });
  });
  const el = main.querySelector(".tile.cursor");
  if (el) el.scrollIntoView({ block: "nearest" });
}

function updateRate() {
  const minutes = (performance.now() - started) / 60000;
  document.getElementById("rate").textContent = `${decided} decided · ${(decided / Math.max(minutes, 1 / 60)).toFixed(0)}/min`;
}

async function flush() {
  if (posting) return;
  posting = true;
  while (outbox.length) {
    const job = outbox[0];
    try {
      const out = await (job.kind === "undo"
        ? api("POST", "/api/curation/undo", { project_id: projectId, stage: "generalist" })
        : api("POST", "/api/curation/decisions", { image_id: job.image_id, stage: "generalist", decision: job.decision }));
      outbox.shift();
      if (job.kind === "undo") job.done(out);
      else setStatus(outbox.length ? `saving ${outbox.length}…` : "");
    } catch (err) {
      if (err.status && err.status < 500 && err.status !== 429) {  // a real refusal: drop it, say why
        outbox.shift();
        setStatus(`not saved: ${err.message}`);
      } else {
        setStatus("offline, retrying…");
        await new Promise((r) => setTimeout(r, 1500));
      }
    }
  }
  posting = false;
}

async function nextPageIfDone() {
  if (items.some((it) => !it.decision)) return;
  const page = await (nextPage || fetchPage(items.map((it) => it.image_id)));
  items = page.items;
  cursor = 0;
  render();
  if (items.length) preload();
}

function decide(decision) {
  const it = items[cursor];
  if (!it) return;
  it.decision = decision;
  decided += 1;
  outbox.push({ kind: "decision", image_id: it.image_id, decision });
  flush();
  const next = items.findIndex((x, i) => i > cursor && !x.decision);
  cursor = next >= 0 ? next : Math.max(0, items.findIndex((x) => !x.decision));
  render();
  updateRate();
  nextPageIfDone();
}

function undo() {
  outbox.push({
    kind: "undo",
    done: (out) => {
      if (!out.image_id) { setStatus("nothing to undo"); return; }
      decided = Math.max(0, decided - 1);
      let i = items.findIndex((x) => x.image_id === out.image_id);
      if (i < 0) {  // it was on an earlier page: bring it back in front
        const it = { ...(seen.get(out.image_id) || { image_id: out.image_id, thumb: `/api/curation/images/${out.image_id}/thumb?size=384` }) };
        items.unshift(it);
        i = 0;
      }
      items[i].decision = undefined;
      cursor = i;
      render();
      updateRate();
      setStatus(`undid ${out.decision} of image ${out.image_id}`);
    },
  });
  flush();
}

// The lightbox: the image under the cursor at 1280 px, with Keep / Drop / Close.
function enlarge() {
  const it = items[cursor];
  const box = document.getElementById("lightbox");
  if (!it || !box) return;
  box.querySelector("img").src = it.large || it.thumb;
  box.querySelector("img").alt = `image ${it.image_id}, large`;
  box.querySelector("#lb-title").textContent = `image ${it.image_id}${it.decision ? ` · ${it.decision}` : ""}`;
  if (!box.open) box.showModal();
}

function lightboxDecide(decision) {
  decide(decision);
  const box = document.getElementById("lightbox");
  if (items[cursor] && !items[cursor].decision) enlarge(); else box.close();
}

function bindControls() {
  const size = document.getElementById("tilesize");
  const apply = () => { document.documentElement.style.setProperty("--tile", `${size.value}px`); localStorage.setItem("dataengine.tile_px", size.value); };
  size.value = localStorage.getItem("dataengine.tile_px") || size.value;
  size.oninput = apply;
  apply();
  document.getElementById("undo").onclick = () => undo();
  document.getElementById("lb-keep").onclick = () => lightboxDecide("keep");
  document.getElementById("lb-drop").onclick = () => lightboxDecide("drop");
  document.getElementById("lb-close").onclick = () => document.getElementById("lightbox").close();
}

function move(dx, dy) {
  const grid = main.querySelector(".grid");
  const cols = grid ? Math.max(1, Math.round(grid.clientWidth / (grid.firstElementChild?.clientWidth || 200))) : 1;
  cursor = Math.min(items.length - 1, Math.max(0, cursor + dx + dy * cols));
  render();
}

document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey || projectId === null) return;
  const k = e.key.toLowerCase();
  const boxOpen = document.getElementById("lightbox")?.open;
  if (boxOpen && (k === "k" || k === "d")) lightboxDecide(k === "k" ? "keep" : "drop");
  else if (boxOpen) return; // Esc closes the dialog itself
  else if (k === "k") decide("keep");
  else if (k === "d") decide("drop");
  else if (e.key === "Enter") enlarge();
  else if (k === "u") undo();
  else if (e.key === "ArrowRight") move(1, 0);
  else if (e.key === "ArrowLeft") move(-1, 0);
  else if (e.key === "ArrowDown") move(0, 1);
  else if (e.key === "ArrowUp") move(0, -1);
  else return;
  e.preventDefault();
});

async function start() {
  await ensureLogin(main);
  bindControls();
  projectId = await chooseProject(main, "Generalist");
  if (projectId === null) return;
  const page = await fetchPage([]);
  items = page.items;
  render();
  if (items.length) preload();
}

start().catch((err) => setStatus(err.message));
