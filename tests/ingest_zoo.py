"""Hostile files for ingest and the image routes: a decompression bomb header, EPS, a file name
that is not UTF-8, a hidden file, an unreadable folder, an animated GIF ... (``hostile_zoo``).

``unreadable_folders()``: tests run as root, and root reads a ``chmod 000`` folder anyway
(CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH). Inside this context the calling *thread* drops those
two capabilities from its effective set (``capset``; they stay permitted and are raised back
on exit), so the kernel's ordinary permission check refuses the folder to this thread exactly
as it would for a normal user. Not root: nothing to drop.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

NON_UTF8 = b"\xff.jpg"
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2
_CAP_V3 = 0x20080522


def png_header_bomb(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose IHDR declares width x height RGB, with a short zlib stream of zeros
    (a decompression bomb: a few hundred bytes on disk, width*height*3 bytes if decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096, 9)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def eps_file(path: Path) -> None:
    """A minimal, valid Encapsulated PostScript drawing (Pillow would hand it to Ghostscript)."""
    path.write_bytes(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n%%EndComments\n"
        b"newpath 10 10 moveto 90 90 lineto stroke\nshowpage\n%%EOF\n"
    )


def animated_gif(path: Path, side: int = 64) -> None:
    frames = [Image.new("RGB", (side, side), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def hostile_zoo(root: Path, shared_data: Path) -> dict[str, str]:
    """Write the zoo under ``root``; returns {printable path relative to root: expected outcome}
    where the outcome is ``ok``, ``ok+multi-frame``, a rejection category or ``skipped:<why>``.
    The folder ``locked/`` is mode 000 (see ``unreadable_folders``)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dog.jpg", "astronaut.jpg"):
        shutil.copyfile(shared_data / "samples" / name, root / name)
    with Image.open(shared_data / "samples" / "dog1.jpg") as im:
        im.convert("RGB").resize((200, 200)).save(os.fsencode(root) + b"/" + NON_UTF8)
        im.convert("RGB").resize((100, 100)).save(root / ".hidden.jpg")
    (root / ".thumbs").mkdir()
    (root / ".thumbs" / "x.jpg").write_bytes((root / "dog.jpg").read_bytes())
    locked = root / "locked"
    locked.mkdir()
    (locked / "inside.jpg").write_bytes((root / "astronaut.jpg").read_bytes())
    locked.chmod(0)
    eps_file(root / "drawing.eps")
    full = (root / "dog.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 3])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("this is a text file, not a PNG\n")
    png_header_bomb(root / "bomb.png", 20_000, 20_000)  # 400 MP declared
    animated_gif(root / "anim.gif")
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(root / "tiny.png")
    return {
        "dog.jpg": "ok",
        "astronaut.jpg": "ok",
        "\\xff.jpg": "ok",
        "anim.gif": "ok+multi-frame",
        ".hidden.jpg": "skipped:hidden",
        ".thumbs": "skipped:hidden",
        "locked": "skipped:unreadable folder",
        "drawing.eps": "unsupported format",
        "truncated.jpg": "truncated",
        "empty.jpg": "empty file",
        "notes.png": "not an image",
        "bomb.png": "too large",
        "tiny.png": "too small",
    }


def _caps() -> tuple[ctypes.CDLL, ctypes.Array[ctypes.c_uint32], ctypes.Array[ctypes.c_uint32]]:
    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(_CAP_V3, 0)  # version, pid 0 = this thread
    data = (ctypes.c_uint32 * 6)()  # 2 x (effective, permitted, inheritable)
    if libc.capget(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    return libc, header, data


@contextmanager
def unreadable_folders() -> Iterator[None]:
    """Within: this thread gets EACCES on folders without read/search permission, even as
    root (module docstring)."""
    if os.geteuid() != 0:
        yield
        return
    libc, header, data = _caps()
    saved = list(data)
    data[0] &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    try:
        yield
    finally:
        data[:] = saved
        if libc.capset(header, data) != 0:
            raise OSError(ctypes.get_errno(), "capset (restore) failed")
