"""Walking folders: every entry met is returned, hidden and unreadable ones with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.walk import walk
from tests.ingest_zoo import unreadable_folders


def test_walk_recurses_sorted_and_reports_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for p in ("b/2.png", "1.png", ".hidden/x.png", ".dot.png"):
        (tmp_path / p).write_bytes(b"")
    got = [(e.path.relative_to(tmp_path).as_posix(), e.skipped) for e in walk([tmp_path])]
    assert got == [
        (".hidden", "hidden: folder not walked"),
        (".dot.png", "hidden"),
        ("1.png", None),
        ("b/2.png", None),
    ]
    # a hidden file named explicitly is probed
    assert [e.skipped for e in walk([tmp_path / ".dot.png"])] == [None]


def test_unreadable_folder_is_reported_not_dropped(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.jpg").write_bytes(b"x")
    (tmp_path / "ok.jpg").write_bytes(b"x")
    locked.chmod(0)
    try:
        with unreadable_folders():
            with pytest.raises(PermissionError):  # a real permission barrier, even for root
                os.listdir(locked)
            got = [(e.path.name, e.skipped) for e in walk([tmp_path])]
    finally:
        locked.chmod(0o755)
    assert ("locked", "unreadable folder: Permission denied") in got
    assert ("ok.jpg", None) in got and all(name != "a.jpg" for name, _ in got)
    # with the capabilities back, the same folder is walked
    assert ("a.jpg", None) in [(e.path.name, e.skipped) for e in walk([tmp_path])]


def test_symlink_loops_are_reported_once(tmp_path: Path) -> None:
    sub = tmp_path / "a"
    sub.mkdir()
    (sub / "x.jpg").write_bytes(b"x")
    os.symlink("..", sub / "up")
    got = walk([tmp_path])
    assert [e.path.name for e in got if e.skipped is None] == ["x.jpg"]
    assert [e.skipped for e in got if e.path.name == "up"] == [
        "skipped: folder already walked (symlink)"
    ]
