"""scripts/bench_ray.py in tiny mode: a real local Ray cluster, both paths over the same
photos, consistent figures and the same masks per image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

try:
    import ray  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "1":
        raise
    pytest.skip("Ray is not installed: pip install -e '.[ray]'", allow_module_level=True)


def test_tiny_run(tmp_path: Path) -> None:
    out = tmp_path / "ray.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "scripts/bench_ray.py", "--tiny", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    assert figures["images"] == 6
    assert figures["ray_done"] == figures["in_process_done"] == 6
    assert figures["same_masks_per_image"] is True
    assert figures["ray_over_in_process"] == pytest.approx(
        figures["ray_images_per_s"] / figures["in_process_images_per_s"]
    )
    assert figures["ray_cluster_start_seconds"] > 0
    assert "Ray / in-process" in proc.stdout and "images/s" in proc.stdout
