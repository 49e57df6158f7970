// Errors as plain sentences, each with a "Try again" button where trying again can help.
// plainError(err) turns an ApiError / network failure into one sentence an annotator can
// act on (no raw "Failed to fetch", no version numbers, no internal words); showError(el,
// err, retry) renders it into el with the button, which calls retry() and clears itself.

import { esc } from "./html.js";

// status -> [sentence, retry helps?]
const BY_STATUS = {
  0: ["The server can't be reached. Check your connection; your changes are kept and sent when it is back.", true],
  401: ["Your session ended. Log in again: you come back to this image with your work.", false],
  403: ["You are not allowed to do this here.", false],
  404: ["This item no longer exists; it may have been removed by someone else.", false],
  409: ["Someone changed this image at the same time, or your time on it ran out. Your work is kept; try again to apply it to what is there now.", true],
  413: ["This change is too large to save; split it into smaller steps.", false],
  422: ["The server could not accept this change.", false],
  429: ["Too many requests at once; wait a moment and try again.", true],
  500: ["The server hit an error. Try again; if it keeps failing, tell an admin.", true],
  502: ["The server is restarting. Try again in a moment.", true],
  503: ["The server is busy or restarting. Try again in a moment.", true],
  504: ["The server took too long to answer. Try again.", true],
};

const INTERNAL = [[/\blease\b/gi, "reservation"], [/\bprefill\b|\bpre-fill\b/gi, "suggestions"]];

// One sentence for the annotator, without internal words.
export function plainError(err) {
  const status = err && typeof err.status === "number" ? err.status : 0;
  const known = BY_STATUS[status] || BY_STATUS[status >= 500 ? 500 : 422];
  let text = known[0];
  if (status === 422 || status === 403) {
    const detail = err && typeof err.detail === "string" ? err.detail : "";
    if (detail && detail.length < 200) text = `${text} (${detail})`;
  }
  for (const [re, word] of INTERNAL) text = text.replace(re, word);
  return text;
}

export function canRetry(err) {
  const status = err && typeof err.status === "number" ? err.status : 0;
  return (BY_STATUS[status] || BY_STATUS[status >= 500 ? 500 : 422])[1];
}

// Render the sentence (and a "Try again" button when it can help) into el.
export function showError(el, err, retry = null) {
  el.innerHTML = `<span class="error" role="alert">${esc(plainError(err))}</span>`;
  if (retry && canRetry(err)) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "retry";
    b.textContent = "Try again";
    b.onclick = () => { el.textContent = ""; retry(); };
    el.append(" ", b);
  }
}

// Replace internal words in any text shown to the annotator.
export function plainWords(text) {
  let out = String(text || "");
  for (const [re, word] of INTERNAL) out = out.replace(re, word);
  return out;
}
