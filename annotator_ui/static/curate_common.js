// Shared by the curation pages: login (same cookie flow as the annotator: POST /api/auth/login),
// project choice (?project=ID), and a small HTML escaper. Plain ES module, no build step.

import { api } from "./js/api.js";

export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

export function setStatus(text) {
  document.getElementById("status").textContent = text || "";
}

// Resolves with the current user once logged in (shows a login form if needed).
export async function ensureLogin(main) {
  try {
    return await api("GET", "/api/auth/me");
  } catch {
    /* not logged in: fall through to the form */
  }
  return new Promise((resolve) => {
    main.innerHTML = `
      <form class="panel" id="login">
        <h2>Log in</h2>
        <label>Name <input name="name" autocomplete="username" required></label>
        <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
        <p class="error" id="err"></p>
        <button class="primary" type="submit">Log in</button>
      </form>`;
    const form = document.getElementById("login");
    form.elements.name.focus();
    form.onsubmit = async (e) => {
      e.preventDefault();
      try {
        const out = await api("POST", "/api/auth/login", { name: form.elements.name.value, password: form.elements.password.value });
        history.replaceState(null, "", location.pathname + location.search);  // api.js sets #/login on 401
        resolve(out.user);
      } catch (err) {
        document.getElementById("err").textContent = err.message;
      }
    };
  });
}

// The project id from ?project=ID, or a picker that reloads the page with it.
export async function chooseProject(main, title) {
  const id = new URLSearchParams(location.search).get("project");
  if (id) return Number(id);
  const projects = await api("GET", "/api/curation/projects");
  main.innerHTML = `
    <div class="panel" style="max-width:640px">
      <h2>${esc(title)}: choose a project</h2>
      <ul class="projects">${projects.map((p) => `
        <li><span><b>${esc(p.name)}</b><br><small>${p.counts.images} images · ${p.counts.generalist_keep || 0} generalist keeps · ${p.counts.specialist_keep || 0} specialist keeps</small></span>
        <a class="button primary" href="?project=${p.id}">Start</a></li>`).join("") || "<li>No projects yet.</li>"}
      </ul>
    </div>`;
  return null;
}
