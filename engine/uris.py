"""Local paths as the text stored in ``image.uri`` (and the sha256 of such a file), and text
made storable in any database.

File names that are not valid UTF-8 (``b"\\xff.jpg"``) are stored as percent-encoded
``file://`` URIs (:func:`path_to_uri`); :func:`uri_to_path` gives the path back and
:func:`display_path` prints it.
"""

from __future__ import annotations

import hashlib
import os
from urllib.parse import quote, unquote_to_bytes


def path_to_uri(path: str | os.PathLike[str]) -> str:
    """The text stored in ``image.uri`` for a local file: the absolute path as is when it is
    valid UTF-8, else a percent-encoded ``file://`` URI of its bytes (lossless, and storable in
    PostgreSQL text, which holds neither NUL nor invalid UTF-8)."""
    text = os.path.abspath(os.fspath(path))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "file://" + quote(os.fsencode(text), safe="/")
    return text


def uri_to_path(uri: str | os.PathLike[str]) -> str:
    """The local path (a str, surrogate-escaped where the name is not UTF-8) of a stored uri."""
    text = os.fspath(uri)
    if text.startswith("file://"):
        return os.fsdecode(unquote_to_bytes(text[len("file://") :]))
    return text


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as printable text: bytes that are not UTF-8 shown as ``\\xff`` escapes."""
    return os.fsencode(uri_to_path(path)).decode("utf-8", "backslashreplace")


def safe_text(text: str) -> str:
    """``text`` made storable in any database: lone surrogates escaped, NUL shown as ``\\x00``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The sha256 (hex) of the local file of a stored uri (or path), read in chunks."""
    h = hashlib.sha256()
    with open(uri_to_path(path), "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
