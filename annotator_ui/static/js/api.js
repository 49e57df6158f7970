// Fetch wrapper for the JSON API (same origin, session cookie). Throws ApiError on non-2xx.

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

const RETRY_STATUS = new Set([502, 503, 504]);
const RETRY_DELAYS_MS = [300, 1000, 3000];

// api(method, url, body, { idempotencyKey, retries }):
// - idempotencyKey: sent as the Idempotency-Key header (mask add / fix). The server answers
//   a repeat of the same key with the first result, so a request whose answer was lost
//   (network error, gateway timeout) is sent again, with the same key, up to `retries` times.
// - retries: how often to resend after a network error or a 502/503/504 (default: 2 with a
//   key, 0 without one; pass it for requests that are safe to repeat, like a submit).
export async function api(method, url, body, { idempotencyKey = null, retries = null } = {}) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  if (idempotencyKey) opts.headers["Idempotency-Key"] = idempotencyKey;
  const tries = 1 + (retries ?? (idempotencyKey ? 2 : 0));
  let res;
  for (let attempt = 0; ; attempt++) {
    try {
      res = await fetch(url, opts);
      if (!RETRY_STATUS.has(res.status) || attempt + 1 >= tries) break;
    } catch (err) {
      if (attempt + 1 >= tries) {
        const failed = new ApiError(0, `network error: ${err.message}`);
        failed.request = { method, url, body, key: idempotencyKey }; // for the offline queue
        throw failed;
      }
    }
    await new Promise((done) => setTimeout(done, RETRY_DELAYS_MS[Math.min(attempt, 2)]));
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) {
    if (res.status === 401 && !url.endsWith("/login")) {
      window.dispatchEvent(new Event("de:session-expired")); // recovery.js keeps the work
      location.hash = "#/login";
    }
    throw new ApiError(res.status, data && data.detail !== undefined ? data.detail : data);
  }
  return data;
}

export function uuid4() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));  // plain-HTTP origins lack randomUUID
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
