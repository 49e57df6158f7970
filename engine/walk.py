"""Walking folders for ingest: every entry met is returned, files to probe and the rest with
the reason they are not probed (hidden, unreadable folder, folder already walked)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WalkEntry:
    """One thing met while walking: a file to probe (``skipped`` None), or an entry not probed
    with the reason (``hidden``, ``unreadable folder: ...``, ``folder already walked ...``)."""

    path: Path | str  # a str for a remote uri or a manifest row (engine.ingest.collect)
    skipped: str | None = None


def walk(paths: list[Path]) -> list[WalkEntry]:
    """Everything under ``paths`` (recursive, sorted, symlinked folders followed once).

    Every regular file and broken/looping link is returned to be probed, image or not, so
    ingest can record why it was rejected. Hidden files (dot files) and hidden folders are not
    probed but returned with reason ``hidden``; folders that cannot be listed are returned
    with reason ``unreadable folder: <why>``. Paths given explicitly are always probed.
    """
    out: list[WalkEntry] = []
    seen_dirs: set[str] = set()
    for root in paths:
        root = Path(root)
        if not root.is_dir():
            out.append(WalkEntry(root))
            continue
        errors: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=errors.append):
            out += _unreadable(errors, root)
            real = os.path.realpath(dirpath)
            if real in seen_dirs:
                out.append(WalkEntry(Path(dirpath), "skipped: folder already walked (symlink)"))
                dirnames[:] = []
                continue
            seen_dirs.add(real)
            for d in sorted(dirnames):
                if d.startswith("."):
                    out.append(WalkEntry(Path(dirpath) / d, "hidden: folder not walked"))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                hidden = "hidden" if name.startswith(".") else None
                out.append(WalkEntry(Path(dirpath) / name, hidden))
        out += _unreadable(errors, root)
    return out


def _unreadable(errors: list[OSError], root: Path) -> list[WalkEntry]:
    """The folders ``os.walk`` could not list (its ``onerror`` reports), emptying ``errors``."""
    out = [
        WalkEntry(
            Path(err.filename) if err.filename else root,
            f"unreadable folder: {err.strerror or err}",
        )
        for err in errors
    ]
    errors.clear()
    return out
