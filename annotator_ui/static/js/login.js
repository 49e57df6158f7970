// The one login form (POST /api/auth/login, session cookie) used by every page.

import { api } from "./api.js";

// Show the form in `container`; resolves with the user ({id, name, role}) once logged in.
export function loginForm(container) {
  container.innerHTML = `
    <form class="panel" id="login">
      <h2>Log in</h2>
      <label>Name <input name="name" autocomplete="username" required></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
      <p class="error" id="err"></p>
      <button class="primary" type="submit">Log in</button>
    </form>`;
  const form = container.querySelector("#login");
  form.elements.name.focus();
  return new Promise((resolve) => {
    form.onsubmit = async (e) => {
      e.preventDefault();
      try {
        const out = await api("POST", "/api/auth/login", {
          name: form.elements.name.value, password: form.elements.password.value,
        });
        resolve(out.user);
      } catch (err) {
        form.querySelector("#err").textContent = err.message;
      }
    };
  });
}

// The current user; shows the login form in `container` first when not logged in.
export async function ensureLogin(container) {
  try {
    return await api("GET", "/api/auth/me");
  } catch {
    /* not logged in: the form */
  }
  const user = await loginForm(container);
  history.replaceState(null, "", location.pathname + location.search);  // api.js sets #/login on 401
  return user;
}
