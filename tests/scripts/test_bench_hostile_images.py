"""scripts/bench_hostile_images.py: a small bomb is rejected at ingest and refused by every route."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from scripts import bench_hostile_images as bench


def test_bomb_is_cheap_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--megapixels", "40", "--max-pixels", "20000000"])
    out = capsys.readouterr().out
    assert re.search(r"rejected: \{'[^']+': 1\}  added: 1", out)
    steps = re.findall(r"^(GET file  |GET thumb |POST decode )(\S+)\s+(\d+)", out, re.M)
    assert len(steps) == 9
    for _, name, status in steps:
        assert (status == "200") == (name == "photo.jpg")
    swapped = re.search(r"GET thumb 256 \(ok image, file now the bomb\)\s+(\d+)", out)
    assert swapped and swapped.group(1) != "200"
    # every step prints its time and memory growth (figures, not asserted: no timed tests)
    rows = re.findall(r" \d+\.\d ms  peak RSS \+ *-?\d+\.\d MB$", out, re.M)
    assert len(rows) >= len(steps) + 1, out


def test_bomb_header_declares_the_size(tmp_path: Path) -> None:
    path = tmp_path / "b.png"
    bench.write_bomb(path, 4.0)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == height == 2000
    assert len(data) < 1000
