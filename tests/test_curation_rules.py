"""Rules: TOML file and flag overrides; every failure has a reason; bad files name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.curation.rules import DEFAULT_RULES_PATH, evaluate, load_rules, parse_rules


def test_default_rules_file_loads_and_is_documented() -> None:
    rules = load_rules()
    assert rules.minimum["sharpness"] > 0 and rules.maximum["aspect_ratio"] > 1
    assert rules.drop_duplicates and rules.radius == 10
    text = DEFAULT_RULES_PATH.read_text()
    for name in [*rules.minimum, *rules.maximum]:
        assert name in text.split("\n[min]")[0]  # every used signal is explained in the header


def test_every_failure_is_a_reason_and_missing_signals_are_skipped() -> None:
    rules = parse_rules(
        {"min": {"sharpness": 60, "short_side": 512}, "max": {"noise": 5, "clutter": 2}}
    )
    good = {"sharpness": 100.0, "short_side": 600.0, "noise": 1.0}
    assert evaluate(rules, good) == []  # no clutter signal: skipped, not failed
    bad = {"sharpness": 12.5, "short_side": 300.0, "noise": 9.0, "clutter": 2.5}
    assert evaluate(rules, bad) == [
        "sharpness 12.5 < min 60",
        "short_side 300 < min 512",
        "clutter 2.5 > max 2",
        "noise 9 > max 5",
    ]


def test_overrides_and_bad_files(tmp_path: Path) -> None:
    rules = load_rules().with_overrides(minimum={"sharpness": 500.0}, maximum={"blockiness": 0.1})
    assert rules.minimum["sharpness"] == 500 and rules.maximum["blockiness"] == 0.1
    assert rules.as_dict()["min"]["sharpness"] == 500
    f = tmp_path / "r.toml"
    f.write_text("[minimum]\nsharpness = 3\n")
    with pytest.raises(ValueError, match="unknown section"):
        load_rules(f)
    f.write_text("[min]\nsharpness = 'high'\n")
    with pytest.raises(ValueError, match="finite number"):
        load_rules(f)
    f.write_text("[min\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_rules(f)
    with pytest.raises(ValueError, match="not found"):
        load_rules(tmp_path / "missing.toml")
    f.write_text("[duplicates]\nradius = 99\n")
    with pytest.raises(ValueError, match="0..64"):
        load_rules(f)
