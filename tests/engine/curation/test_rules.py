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


def test_curate_auto_cli_records_reasons_and_duplicates(
    factory, db_url, shared_data, tmp_path, monkeypatch
) -> None:
    from PIL import Image as PILImage

    from db.curation import active_decisions
    from db.models import Image
    from db.session import transaction
    from engine.curation.degrade import gaussian_blur, resize
    from engine.imageio import load_rgb, probe
    from tests.curation_helpers import add_photos, run_cli
    from tests.factories import make_image, make_mask, make_project

    src = sorted((shared_data / "tiny-coco/val2017").glob("*.jpg"))[0]
    rgb = load_rgb(src)
    PILImage.fromarray(resize(rgb, 0.9)).save(tmp_path / "copy.png")  # a near-duplicate
    PILImage.fromarray(gaussian_blur(rgb, 4.0)).save(tmp_path / "blur.jpg", quality=95)
    (tmp_path / "gone.jpg").write_bytes(b"")
    with transaction(factory) as s:
        p = make_project(s)
        images = add_photos(s, p, shared_data, 3)
        extra = {}
        for name in ("copy.png", "blur.jpg"):
            r = probe(tmp_path / name)
            extra[name] = make_image(
                s,
                project=p,
                uri=str(tmp_path / name),
                sha256=r.sha256,
                width=r.width,
                height=r.height,
                phash=r.phash,
            ).id
        broken = make_image(s, project=p, uri=str(tmp_path / "missing.jpg")).id
        make_mask(s, image=images[1], status="accepted", mask=None)
        name, first, second = p.name, images[0].id, images[1].id
    rules = tmp_path / "rules.toml"
    rules.write_text("[min]\nsharpness = 30\n[max]\nnoise = 50\n[duplicates]\nradius = 10\n")
    result = run_cli(
        ["curate", "auto", "-p", name, "--rules", str(rules), "--min-short-side", "100"],
        db_url,
        monkeypatch,
    )
    assert result.exit_code == 0, result.output
    assert "failed" in result.output and "near-duplicate" in result.output
    with transaction(factory) as s:
        d = {
            x.image_id: x
            for x in active_decisions(s, project_id=s.get(Image, first).project_id, stage="auto")
        }
        assert d[first].decision == "pass" and d[first].reasons == []
        assert d[extra["copy.png"]].decision == "fail"
        assert (
            d[extra["copy.png"]].reasons[-1].startswith(f"near-duplicate of image {first} (hamming")
        )
        assert any(
            r.startswith("sharpness") and "< min 30" in r for r in d[extra["blur.jpg"]].reasons
        )
        assert d[broken].decision == "fail" and d[broken].reasons[0].startswith("unreadable")
        sig = s.get(Image, second).signals
        assert sig["n_masks"] == 1 and 0 < sig["subject_area"] < 1 and sig["sharpness"] > 30
        assert s.get(Image, first).project.settings["curation"]["rules"]["min"] == {
            "sharpness": 30.0,
            "short_side": 100.0,
        }
    again = run_cli(["curate", "auto", "-p", name, "--max", "noise=0.001"], db_url, monkeypatch)
    assert again.exit_code == 0, again.output
    with transaction(factory) as s:
        d = active_decisions(s, project_id=s.get(Image, first).project_id, stage="auto")
        assert len(d) == 6 and all(x.decision == "fail" for x in d)  # re-run supersedes
    bad = run_cli(["curate", "auto", "-p", name, "--min", "sharpness"], db_url, monkeypatch)
    assert bad.exit_code == 1 and "SIGNAL=NUMBER" in bad.output
