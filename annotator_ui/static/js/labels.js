// Labels on the review page: the number-key chips (the project's hotkey list, each a
// button that labels the selected mask), the always-visible label for NEW objects (an
// explicit select, never inherited from the last labelling), and the taxonomy for the
// typed label box (L).

import { esc } from "./html.js";

export class Labels {
  // root: element holding #toplabels, #newlabel, #taxonomy; onChip(label): label the selection
  constructor(root, { onChip, onNewLabel }) {
    this.root = root;
    this.chips = root.querySelector("#toplabels");
    this.newSel = root.querySelector("#newlabel");
    this.chips.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-label]");
      if (b) onChip(b.dataset.label);
    });
    this.newSel.addEventListener("change", () => onNewLabel(this.newLabel()));
    this.hotkeys = [];
  }

  // labels: the taxonomy; hotkeys: labels of keys 1-9 in order (from the task)
  set(labels, hotkeys) {
    this.labels = labels;
    this.hotkeys = hotkeys && hotkeys.length ? hotkeys : labels.slice(0, 9);
    this.root.querySelector("#taxonomy").innerHTML = labels.map((l) => `<option value="${esc(l)}">`).join("");
    this.chips.innerHTML = this.hotkeys.map((l, i) => `<button type="button" class="chip" data-label="${esc(l)}" title="label the selected mask ${esc(l)} (key ${i + 1})"><kbd>${i + 1}</kbd> ${esc(l)}</button>`).join("");
    const keep = this.newLabel();
    this.newSel.innerHTML = `<option value="">no label</option>${labels.map((l) => `<option value="${esc(l)}">${esc(l)}</option>`).join("")}`;
    this.newSel.value = labels.includes(keep) ? keep : "";
  }

  // The label of key n (1-9), or null.
  forKey(n) { return this.hotkeys[n - 1] ?? null; }

  newLabel() { return this.newSel.value || null; }
}
