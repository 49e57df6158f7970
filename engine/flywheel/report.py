"""Flywheel plots (matplotlib Agg PNG) and a self-contained HTML report.

Input is the dict of ``engine.flywheel.metrics_project.project_metrics``. Each plot shows one figure per
round, one series per arm, with the bootstrap 95 % interval as error bars, and the SAM
paper's values (Kirillov et al. 2023, section 4) as labelled horizontal reference lines.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from engine.flywheel.metrics import ARMS, FIGURES  # noqa: E402

# figure -> (title, y label, [(value, label), ...] SAM paper references)
PLOTS: dict[str, tuple[str, str, list[tuple[float, str]]]] = {
    "seconds_per_final_mask": (
        "Human active seconds per final mask",
        "seconds",
        [(34.0, "SAM assisted-manual, start: 34 s"), (14.0, "SAM after 6 retrainings: 14 s")],
    ),
    "final_masks_per_image": (
        "Final masks per image",
        "masks",
        [
            (20.0, "SAM assisted-manual, start: 20"),
            (44.0, "SAM after 6 retrainings: 44"),
            (72.0, "SAM with confident pre-fill: 72"),
        ],
    ),
    "prefill_precision": ("Pre-fill precision (accepted as-is / shown)", "fraction", []),
    "prefill_contribution": (
        "Pre-fill contribution (final masks that began as a proposal)",
        "fraction",
        [],
    ),
}
ARM_STYLE = {"prefill": ("tab:blue", "o"), "control": ("tab:orange", "s")}
LABELS = {
    "final_masks_per_image": "masks / image",
    "prefill_precision": "pre-fill precision",
    "prefill_contribution": "pre-fill contribution",
    "seconds_per_image": "s / image",
    "seconds_per_final_mask": "s / final mask",
    "seconds_per_added_mask": "s / added mask",
    "clicks_per_added_mask": "clicks / added mask",
    "fixed_iou": "IoU fixed vs final",
    "masks_per_annotator_hour": "masks / annotator-hour",
    "released_s": "s on unfinished images",
    "imported_s": "s imported (Label Studio)",
}


def plot_png(metrics: dict[str, Any], figure: str, *, references: bool = True) -> bytes:
    """One figure (a key of ``PLOTS``) per round and arm as PNG bytes (Agg, 100 dpi): bars
    with 95 % intervals for one or two rounds, lines with an interval band for more."""
    if figure not in PLOTS:
        raise ValueError(f"no plot for {figure!r}; choose one of {', '.join(PLOTS)}")
    title, ylabel, refs = PLOTS[figure]
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    try:
        bars = plot_kind(metrics) == "bars"
        offsets = {"prefill": -0.2, "control": 0.2} if bars else {"prefill": -0.06, "control": 0.06}
        plotted = False
        for arm in ARMS:
            pts = [g for g in metrics.get("groups", []) if g["arm"] == arm]
            pts = [g for g in pts if g["figures"][figure]["value"] is not None]
            if not pts:
                continue
            xs = [_x(g["round"]) + offsets[arm] for g in pts]
            ys = [g["figures"][figure]["value"] for g in pts]
            lo = [y - (g["figures"][figure]["lo"] if g["figures"][figure]["lo"] is not None else y)
                  for g, y in zip(pts, ys, strict=True)]  # fmt: skip
            hi = [(g["figures"][figure]["hi"] if g["figures"][figure]["hi"] is not None else y) - y
                  for g, y in zip(pts, ys, strict=True)]  # fmt: skip
            color, marker = ARM_STYLE[arm]
            if bars:  # one or two rounds: a bar per arm with its interval, value written on it
                drawn = ax.bar(xs, ys, width=0.36, yerr=[lo, hi], color=color, alpha=0.8,
                               capsize=6, ecolor="black", label=f"{arm} arm (95% CI)")  # fmt: skip
                ax.bar_label(drawn, labels=[f"{y:.3g}" for y in ys], fontsize=8, padding=2)
            else:  # many rounds: a line through the rounds, the interval as a band
                ax.plot(xs, ys, color=color, marker=marker, label=f"{arm} arm (95% CI)")
                ax.fill_between(xs, [y - d for y, d in zip(ys, lo, strict=True)],
                                [y + d for y, d in zip(ys, hi, strict=True)], color=color,
                                alpha=0.2, linewidth=0)  # fmt: skip
            plotted = True
        if references:
            for value, label in refs:
                ax.axhline(value, color="grey", linestyle="--", linewidth=0.8)
                ax.annotate(label, xy=(0.01, value), xycoords=("axes fraction", "data"),
                            fontsize=7, color="dimgray", va="bottom")  # fmt: skip
        rounds = sorted({_x(g["round"]) for g in metrics.get("groups", [])})
        if rounds:
            ax.set_xticks(rounds, [str(r) if r else "no round" for r in rounds])
            ax.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
        if not plotted:
            ax.text(0.5, 0.5, "no data yet", transform=ax.transAxes, ha="center", color="grey")
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if plotted:
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def plot_kind(metrics: dict[str, Any]) -> str:
    """``"bars"`` when the metrics hold one or two rounds (a dot per round would be all there
    is to see), ``"lines"`` from three on."""
    rounds = {_x(g["round"]) for g in metrics.get("groups", [])}
    return "bars" if len(rounds) <= 2 else "lines"


def _x(rnd: int | None) -> int:
    """Plot position of a round: work done while no round was open sits at 0."""
    return 0 if rnd is None else int(rnd)


def round_name(rnd: int | None) -> str:
    """``"no round"`` for work done while no round was open, else the round number."""
    return "no round" if rnd is None else str(rnd)


def _fmt(v: dict[str, Any]) -> str:
    if v["value"] is None:
        return "–"
    if v["lo"] is None:
        return f"{v['value']:.3g}"
    return f"{v['value']:.3g} <small>[{v['lo']:.3g}, {v['hi']:.3g}]</small>"


def table_html(metrics: dict[str, Any]) -> str:
    """An HTML table: one row per round x arm, one column per figure (value [95% CI]), then
    the effort outside the figures (``released_s``, ``imported_s``)."""
    head = "".join(f"<th>{html.escape(LABELS[f])}</th>" for f in FIGURES)
    rows = []
    for g in metrics.get("groups", []):
        cells = "".join(f"<td>{_fmt(g['figures'][f])}</td>" for f in FIGURES)
        rows.append(
            f"<tr><td>{round_name(g['round'])}</td><td>{g['arm']}</td><td>{g['images_done']}</td>"
            f"{cells}<td>{g.get('released_s', 0.0):.1f}</td><td>{g.get('imported_s', 0.0):.1f}</td></tr>"
        )  # fmt: skip
    return (f"<table><thead><tr><th>round</th><th>arm</th><th>images</th>{head}"
            f"<th>{html.escape(LABELS['released_s'])}</th><th>{html.escape(LABELS['imported_s'])}</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


def render_html(metrics: dict[str, Any], *, title: str, extra: dict[str, Any] | None = None) -> str:
    """The whole report as one HTML string with the PNG plots inlined as base64."""
    imgs = []
    for fig in PLOTS:
        b64 = base64.b64encode(plot_png(metrics, fig)).decode("ascii")
        imgs.append(f'<figure><img alt="{html.escape(PLOTS[fig][0])}" '
                    f'src="data:image/png;base64,{b64}"></figure>')  # fmt: skip
    rounds = "".join(
        f"<li>round {r['round']}: model version {r['model_version_id']}, control fraction "
        f"{r['control_fraction']:.2f} (seed {r['seed']}), started {html.escape(r['started_at'])}</li>"
        for r in metrics.get("rounds", [])
    )
    notes = "".join(f"<p><b>Note:</b> {html.escape(n)}</p>" for n in metrics.get("notes", []))
    extra_html = ""
    if extra:
        extra_html = "<h2>Notes</h2><ul>" + "".join(
            f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in extra.items()
        ) + "</ul>"  # fmt: skip
    bs = metrics.get("bootstrap", {})
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f4f4f4; }} small {{ color: #777; }}
figure {{ display: inline-block; margin: 0.5em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Generated {now}. Idle cap {metrics.get("idle_s")} s; intervals: {bs.get("level", 0.95):.0%}
cluster bootstrap over images ({bs.get("reps")} resamples, seed {bs.get("seed")}).
Dashed lines: SAM paper (Kirillov et al. 2023, section 4) reference values.</p>
<h2>Rounds</h2><ul>{rounds}</ul>
<h2>Figures per round and arm</h2>{notes}{table_html(metrics)}
<p><small>Effort definitions (what counts, what is capped, released and imported effort):
docs/effort.md.</small></p>
<h2>Plots</h2>{"".join(imgs)}
{extra_html}
</body></html>
"""
