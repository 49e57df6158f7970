"""The pure metrics: per-image table, root IoUs, bootstrap and summary, on plain rows."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pytest

from engine.flywheel.metrics import (
    FIGURES,
    NO_ROUND,
    bootstrap_counts,
    build_table,
    metrics_report,
    root_ious,
    summarise,
)
from engine.masks import encode_rle

CACHED = ("final", "from_proposal", "added", "shown", "accepted_as_is", "fixed",
          "fixed_iou_sum", "seconds", "added_seconds", "added_clicks", "added_timed",
          "imported_s")  # fmt: skip


def _row(image_id: int, rnd: int | None, arm: str, lease: int | None, **vals: float) -> tuple:
    return (image_id, rnd, arm, lease, *(vals.get(c, 0.0) for c in CACHED))


def test_bootstrap_counts_resample_every_unit() -> None:
    counts = bootstrap_counts(7, 50, np.random.default_rng(0))
    assert counts.shape == (50, 7)
    assert (counts.sum(axis=1) == 7).all()
    assert bootstrap_counts(0, 5, np.random.default_rng(0)).shape == (5, 0)


def test_build_table_keeps_unfinished_seconds_apart_and_hides_control_proposals() -> None:
    rows = [
        _row(1, 1, "prefill", 10, final=3, shown=2, accepted_as_is=1, seconds=30.0),
        _row(2, 1, "prefill", None, final=1, seconds=9.0, imported_s=4.0),  # released
        _row(3, 1, "control", 11, final=2, shown=5, accepted_as_is=5, seconds=12.0),
        (4, None, "prefill", 12, *([None] * len(CACHED))),  # lost to a concurrent refresh
    ]
    t = build_table(rows, cached=CACHED)
    assert t.image_ids.tolist() == [1, 2, 3, 4]
    assert t.rounds.tolist() == [1, 1, 1, NO_ROUND]
    assert t.cols["one"].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert t.cols["released_s"].tolist() == [0.0, 9.0, 0.0, 0.0]
    assert t.cols["seconds"].tolist() == [30.0, 0.0, 12.0, 0.0]
    assert t.cols["final"].tolist() == [3.0, 0.0, 2.0, 0.0]
    assert t.cols["imported_s"].tolist() == [0.0, 4.0, 0.0, 0.0]
    assert t.cols["shown"].tolist() == [2.0, 0.0, 0.0, 0.0]  # control: nothing shown
    assert t.cols["accepted_as_is"].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_summarise_gives_ratios_of_sums_and_collapsed_intervals_for_one_image() -> None:
    rows = [
        _row(1, 1, "prefill", 10, final=4, seconds=40.0),
        _row(2, 1, "prefill", 11, final=1, seconds=20.0),
        _row(3, 2, "prefill", 12, final=2, seconds=10.0),
    ]
    groups = summarise(build_table(rows, cached=CACHED), reps=100, seed=1)
    assert [(g["round"], g["arm"], g["images_done"]) for g in groups] == [
        (1, "prefill", 2),
        (2, "prefill", 1),
    ]
    spm = groups[0]["figures"]["seconds_per_final_mask"]
    assert (spm["value"], spm["num"], spm["den"]) == (12.0, 60.0, 5.0)
    assert 5.0 <= spm["lo"] <= spm["value"] <= spm["hi"] <= 20.0
    one = groups[1]["figures"]["final_masks_per_image"]
    assert one["lo"] == pytest.approx(2.0) and one["hi"] == pytest.approx(2.0)
    assert groups[1]["figures"]["fixed_iou"]["value"] is None  # no fixes: no figure
    assert set(groups[0]["figures"]) == set(FIGURES)


def test_root_ious_follow_the_lineage_to_the_model_proposal() -> None:
    a = np.zeros((8, 8), bool)
    a[:4, :4] = True  # the proposal, 16 px
    b = np.zeros((8, 8), bool)
    b[:4, :2] = True  # an intermediate edit
    final = np.zeros((8, 8), bool)
    final[:4, :8] = True  # 32 px, contains the proposal: IoU 0.5
    lineage = {1: (None, "model", encode_rle(a)), 2: (1, "model_edited", encode_rle(b))}
    finals = [
        SimpleNamespace(id=3, image_id=7, parent_id=2, rle=encode_rle(final)),
        SimpleNamespace(id=4, image_id=7, parent_id=99, rle=encode_rle(final)),  # no proposal
    ]
    assert root_ious(finals, lineage) == {3: (7, pytest.approx(0.5))}


def test_metrics_report_notes_no_round_work_and_empty_projects() -> None:
    started = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rnd = SimpleNamespace(number=1, id=5, model_version_id=2, control_fraction=0.2, seed=0,
                          started_at=started, ended_at=None)  # fmt: skip
    table = build_table([_row(1, None, "prefill", 10, final=1, seconds=5.0)], cached=CACHED)
    m = metrics_report(project_id=3, project_name="p", idle_s=30.0, rounds=[rnd], table=table,
                       reps=10)  # fmt: skip
    assert m["rounds"][0]["started_at"] == started.isoformat() and m["groups"][0]["round"] is None
    assert len(m["notes"]) == 1 and "--project p" in m["notes"][0]
    empty = metrics_report(project_id=3, project_name="p", idle_s=30.0, rounds=[],
                           table=build_table([], cached=CACHED))  # fmt: skip
    assert empty["groups"] == [] and "no annotation work" in empty["notes"][0]
