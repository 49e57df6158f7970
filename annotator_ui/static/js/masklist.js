// The review page's mask list: one row per mask (colour, id, label, confidence, status),
// largest first, the selection highlighted and scrolled into view, the next target marked,
// and a visibility toggle per mask. Rows and toggles are buttons: usable by mouse and Tab.

import { esc } from "./html.js";

export class MaskList {
  // ul: the <ul>; onSelect(id), onToggle(id): the page's handlers
  constructor(ul, { onSelect, onToggle }) {
    this.ul = ul;
    ul.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-id]");
      if (!b) return;
      const id = Number(b.dataset.id);
      if (b.classList.contains("eye")) onToggle(id);
      else onSelect(id);
    });
  }

  // entries: [{data, rgb}] to list; selected / next: mask ids; hidden: Set of hidden ids
  render(entries, { selected, next, hidden }) {
    const items = [...entries].sort((a, b) => b.data.area - a.data.area).slice(0, 500);
    this.ul.innerHTML = items.map((m) => {
      const d = m.data;
      const conf = d.status === "proposed" && d.confidence != null ? `${Math.round(d.confidence * 100)}%` : "";
      const off = hidden.has(d.id);
      const cls = [d.id === selected ? "sel" : "", d.id === next ? "next" : "", off ? "off" : "", `st-${d.status}`].join(" ");
      const tag = d.status === "proposed" && !d.confident ? "less confident" : d.status;
      return `<li class="${cls}" data-mask="${d.id}">`
        + `<button type="button" class="pick" data-id="${d.id}" aria-pressed="${d.id === selected}">`
        + `<span class="sw${d.status === "proposed" && !d.confident ? " dashed" : ""}" style="border-color:rgb(${m.rgb.join(",")})"></span>`
        + `<span class="mid">#${d.id}</span> <span class="lab">${d.label ? esc(d.label) : "<i>no label</i>"}</span> <span class="conf">${conf}</span>`
        + `${d.id === next ? ' <span class="nx">next</span>' : ""}<span class="st">${tag}</span></button>`
        + `<button type="button" class="eye" data-id="${d.id}" aria-pressed="${!off}" title="${off ? "show" : "hide"} mask #${d.id}" aria-label="${off ? "show" : "hide"} mask #${d.id}">${off ? "show" : "hide"}</button></li>`;
    }).join("");
    const row = selected != null ? this.ul.querySelector(`li[data-mask="${selected}"]`) : null;
    if (row) row.scrollIntoView({ block: "nearest" });
  }
}
