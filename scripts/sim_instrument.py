"""The instrument check of ``scripts/simulate_flywheel.py --proposer synthetic``.

Injected vs measured, for the prefill arm of round 1:

- precision: injected ``ProposalSpec.precision``; realised = the simulated annotator's
  accepted / (accepted + rejected + fixed) shown proposals; measured = the metrics'
  ``prefill_precision`` with its cluster-bootstrap 95 % interval;
- contribution: injected ``ProposalSpec.recall`` (every missed object is added, so the share
  of final masks that came from proposals is the recall); realised = (accepted + fixed) /
  (accepted + fixed + added); measured = ``prefill_contribution``;
- seconds per final mask: injected = the cost model's mean time of the actions taken
  (``expected_ms``: the sum of the un-jittered action costs) / the masks finalised; realised =
  the simulated person's own clock (the jittered times, ``ledger_ms``) / the same masks;
  measured = ``seconds_per_final_mask`` derived from the posted event log.

``inside`` says whether the injected value lies in the measured interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from engine.flywheel.power import PowerResult
from engine.flywheel.synthetic import ProposalSpec, SyntheticProposer, scene

FIGURES = (("precision", "prefill_precision"), ("contribution", "prefill_contribution"),
           ("s/final mask", "seconds_per_final_mask"))  # fmt: skip


def write_scenes(folder: Path, n: int, seed: int) -> Path:
    """n synthetic photos as ``folder/scene_NNN.png`` + ``folder/masks/scene_NNN.png``
    (instance ids 1..k), the mask-folder layout ``load_mask_folder`` reads."""
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 11])
    for i in range(n):
        img, masks = scene(rng)
        ids = np.zeros(img.shape[:2], np.uint8)
        for k, m in enumerate(masks, start=1):
            ids[m] = k
        PILImage.fromarray(img).save(folder / f"scene_{i:03d}.png")
        PILImage.fromarray(ids).save(folder / "masks" / f"scene_{i:03d}.png")
    return folder


def _score_corr(proposer: SyntheticProposer) -> float:
    pred, true = [], []
    for g in proposer.generated.values():
        for p, t, shown in zip(g.predicted, g.true_iou, g.shown, strict=True):
            if shown:
                pred.append(p)
                true.append(t)
    if len(pred) < 3 or np.std(pred) == 0 or np.std(true) == 0:
        return float("nan")
    return float(np.corrcoef(pred, true)[0, 1])


def instrument_rows(
    result: dict[str, Any], spec: ProposalSpec, proposer: SyntheticProposer
) -> dict[str, Any]:
    """``{"rows": [{figure, injected, realised, value, lo, hi, inside}], "score_corr",
    "images", "hidden_stored"}`` for round 1's prefill arm (see the module docstring)."""
    imgs = [i for i in result["per_image"] if i["round"] == 1 and i.get("prefill_arm")]
    tot = {k: sum(float(i.get(k, 0)) for i in imgs)
           for k in ("accepted", "rejected", "fixed", "added", "ledger_ms", "expected_ms")}  # fmt: skip
    shown = tot["accepted"] + tot["rejected"] + tot["fixed"]
    final = tot["accepted"] + tot["fixed"] + tot["added"]
    realised = {
        "precision": tot["accepted"] / shown if shown else None,
        "contribution": (tot["accepted"] + tot["fixed"]) / final if final else None,
        "s/final mask": tot["ledger_ms"] / 1000.0 / final if final else None,
    }
    injected = {"precision": spec.precision, "contribution": spec.recall,
                "s/final mask": tot["expected_ms"] / 1000.0 / final if final else None}  # fmt: skip
    group = next((g for g in result["metrics"]["groups"]
                  if g["round"] == 1 and g["arm"] == "prefill"), None)  # fmt: skip
    rows = []
    for name, key in FIGURES:
        fig = group["figures"][key] if group else {"value": None, "lo": None, "hi": None}
        inj, lo, hi = injected[name], fig["lo"], fig["hi"]
        inside = inj is not None and lo is not None and lo - 1e-9 <= inj <= hi + 1e-9
        rows.append({"figure": name, "injected": inj, "realised": realised[name],
                     "value": fig["value"], "lo": lo, "hi": hi, "inside": bool(inside)})  # fmt: skip
    hidden = sum(1 for g in proposer.generated.values() for s in g.shown if not s)
    return {"spec": spec.key, "images": len(imgs), "rows": rows,
            "score_corr": _score_corr(proposer), "hidden_stored": hidden}  # fmt: skip


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def format_instrument(checks: list[dict[str, Any]]) -> str:
    """The injected-vs-measured table for one or more settings."""
    lines = [f"{'setting':<34} {'imgs':>4} {'figure':<13} {'injected':>8} {'realised':>8} "
             f"{'measured [95% CI]':>24} {'inside':>6}"]  # fmt: skip
    for c in checks:
        for j, r in enumerate(c["rows"]):
            ci = f"{_f(r['value'])} [{_f(r['lo'])},{_f(r['hi'])}]"
            lines.append(f"{c['spec'] if j == 0 else '':<34} {c['images'] if j == 0 else '':>4} "
                         f"{r['figure']:<13} {_f(r['injected']):>8} {_f(r['realised']):>8} "
                         f"{ci:>24} {'yes' if r['inside'] else 'NO':>6}")  # fmt: skip
        lines.append(f"{'':<34} {'':>4} predicted~true IoU Pearson r {_f(c['score_corr'], 2)}, "
                     f"{c['hidden_stored']} hidden proposals stored (never shown)")  # fmt: skip
    return "\n".join(lines)


def format_power(res: PowerResult, spec: str) -> str:
    return (
        f"power ({spec}): seconds per final mask {res.ratio:.2f} s, per-image residual sd "
        f"{res.sd_residual:.2f} s/mask over {res.n_measured} images.\n"
        f"  Detecting a {res.delta:.0%} change (two-sided alpha {res.alpha}, power "
        f"{res.power:.0%}) needs {res.images_per_arm} images per arm "
        "(analytic: delta-method variance of the ratio, n = 2 sd^2 (z_a/2 + z_b)^2 / "
        f"(delta R)^2); simulated power at that n: {res.simulated_power:.1%} "
        "(images resampled from this run, 2000 two-arm draws)."
    )
