// Screens: #/login, #/queue (projects and "start"), #/review/<project id> (the canvas).

import { api } from "./api.js";
import { EventLog, K } from "./events.js";
import { esc } from "./html.js";
import { loginForm } from "./login.js";
import { attachRecovery, returnHash } from "./recovery.js";
import { Review } from "./review.js";

const main = document.getElementById("main");
const statusEl = document.getElementById("status");
const events = new EventLog();
let me = null;
let review = null;

const setStatus = (text) => { statusEl.textContent = text || ""; };

async function whoami() {
  try {
    me = await api("GET", "/api/auth/me");
    document.getElementById("who").textContent = `${me.name} (${me.role})`;
    document.getElementById("logout").hidden = false;
    for (const link of document.querySelectorAll("nav a[data-roles]")) {
      link.hidden = !link.dataset.roles.split(" ").includes(me.role);
    }
  } catch { me = null; }
  return me;
}

document.getElementById("logout").onclick = async () => {
  await events.drain(3000);
  await api("POST", "/api/auth/logout").catch(() => null);
  me = null;
  document.getElementById("who").textContent = "";
  document.getElementById("logout").hidden = true;
  location.hash = "#/login";
};

async function showLogin() {
  await loginForm(main);
  await whoami();
  events.emit(K.SESSION_START, { payload: { user: me.name } });
  location.hash = returnHash() || "#/queue"; // back to the image a session expiry interrupted
}

async function showQueue() {
  const projects = await api("GET", "/api/projects");
  main.innerHTML = `
    <div class="panel" style="max-width:640px">
      <h2>Projects</h2>
      <ul class="projects">${projects.map((p) => `
        <li><span><b>${esc(p.name)}</b><br><small>${p.queue.free} to do · ${p.queue.leased} in progress · ${p.queue.done} done</small></span>
        <button class="primary" data-id="${p.id}" type="button">Start</button></li>`).join("") || "<li>No projects yet.</li>"}
      </ul>
    </div>`;
  main.querySelectorAll("button[data-id]").forEach((b) => {
    b.onclick = () => { location.hash = `#/review/${b.dataset.id}`; };
  });
}

async function showReview(projectId) {
  if (review) review.destroy();
  main.innerHTML = "";
  let task;
  try {
    task = await api("POST", "/api/tasks/next", { project_id: projectId });
  } catch (err) {
    main.innerHTML = `<div class="panel"><h2>Nothing to do</h2><p>${esc(err.message)}</p><p><a href="#/queue">Back to the queue</a></p></div>`;
    return;
  }
  review = new Review(main, {
    events, projectId, setStatus,
    onNext: () => { events.flush(); showReview(projectId); },
  });
  window.deReview = review; // handle for debugging and the browser test
  setStatus(`reserved for you until ${new Date(task.expires_at).toLocaleTimeString()}`);
  await review.load(task);
}

async function route() {
  const hash = location.hash || "#/queue";
  if (review && !hash.startsWith("#/review/")) { review.destroy(); review = null; }
  if (hash === "#/login") return showLogin();
  if (!me && !(await whoami())) { location.hash = "#/login"; return null; }
  const m = hash.match(/^#\/review\/(\d+)$/);
  if (m) return showReview(Number(m[1]));
  return showQueue();
}

attachRecovery(() => review);
window.addEventListener("hashchange", () => route().catch((err) => setStatus(err.message)));
route().catch((err) => setStatus(err.message));
