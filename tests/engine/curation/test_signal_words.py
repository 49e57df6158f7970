"""Signals in plain words, ranked within the project in each signal's good direction."""

from __future__ import annotations

import pytest

from engine.curation.signal_words import describe, describe_all, percentile_rank, sorted_values


def test_percentile_and_words() -> None:
    pop = sorted_values([{"sharpness": float(v), "noise": float(v)} for v in range(1, 101)])
    assert percentile_rank(88.0, pop["sharpness"]) == 88.0
    sharp = describe("sharpness", 89.0, pop["sharpness"])
    assert sharp["text"] == "Sharp: top 12 % of this project" and sharp["percentile"] == 89.0
    # low noise is good: the 5th-lowest noise is in the top 5 %
    assert (
        describe("noise", 5.0, pop["noise"])["text"] == "Clean (low noise): top 5 % of this project"
    )
    assert (
        describe("sharpness", 10.0, pop["sharpness"])["text"]
        == "Sharp: bottom 10 % of this project"
    )
    assert describe("aspect_ratio", 1.5, [])["text"] == "Aspect ratio: 1.50"
    assert "only image" in describe("sharpness", 3.0, [3.0])["text"]
    with pytest.raises(ValueError, match="at least one"):
        percentile_rank(1.0, [])


def test_describe_all_skips_missing_and_non_finite() -> None:
    pop = sorted_values([{"quality": 0.1}, {"quality": 0.9}, None, {"quality": float("nan")}])
    assert pop == {"quality": [0.1, 0.9]}
    out = describe_all({"quality": 0.9, "noise": None}, pop, ["quality", "noise"])
    assert [d["text"] for d in out] == ["Overall quality: top 50 % of this project"]
