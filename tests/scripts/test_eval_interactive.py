"""scripts/eval_interactive.py end to end on a few real GrabCut images."""

from __future__ import annotations

import json

from scripts.eval_interactive import main


def test_grabcut_subset(shared_data, tmp_path, capsys):
    out = tmp_path / "res.json"
    result = main(
        [
            "--dataset",
            "grabcut",
            "--limit",
            "2",
            "--max-clicks",
            "6",
            "--json",
            str(out),
            "--data-root",
            str(shared_data),
        ]
    )
    s = result["summary"]
    assert s["objects"] == 2
    assert set(s) >= {
        "noc85",
        "noc90",
        "miou@1",
        "miou@3",
        "miou@5",
        "failures",
        "latency_p50_ms",
        "latency_p95_ms",
    }
    assert 1 <= s["noc85"] <= s["noc90"] <= 6
    assert 0.0 <= s["miou@1"] <= s["miou@5"] + 0.2 and s["miou@5"] <= 1.0
    assert 0 <= s["failures"] <= 2
    assert 0 < s["latency_p50_ms"] <= s["latency_p95_ms"]
    saved = json.loads(out.read_text())
    assert saved["summary"] == s and len(saved["per_object"]) == 2
    assert all(len(p["ious"]) >= 5 for p in saved["per_object"])
    assert '"noc90"' in capsys.readouterr().out


def test_coco_json_mode(shared_data, tmp_path):
    ann = shared_data / "tiny-coco" / "annotations" / "instances_val2017.json"
    result = main(["--dataset", str(ann), "--limit", "1", "--max-clicks", "5", "--quiet"])
    assert result["summary"]["objects"] >= 1
    assert all(":" in p["name"] for p in result["per_object"])
