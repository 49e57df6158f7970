// The one HTML escaper of the client: text (or any value) -> safe in element content and
// in quoted attribute values. Every page builds its markup with it.

const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ENTITIES[c]);
