// Shared by the curation pages: status line and project choice (?project=ID). The login form
// (js/login.js), HTML escaper (js/html.js) and fetch wrapper (js/api.js) are the app's own.
// Plain ES module, no build step.

import { api } from "./js/api.js";
import { esc } from "./js/html.js";

export function setStatus(text) {
  document.getElementById("status").textContent = text || "";
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
