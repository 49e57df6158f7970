"""Stored uris of local paths: non-UTF-8 file names round-trip, and text is made storable."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from engine.imageio import load_rgb, probe
from engine.uris import display_path, path_to_uri, safe_text, uri_to_path
from tests.ingest_zoo import NON_UTF8


def test_non_utf8_names_round_trip_through_the_stored_uri(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/" + NON_UTF8
    Image.new("RGB", (40, 40), (5, 6, 7)).save(raw)
    path = os.fsdecode(raw)
    uri = path_to_uri(path)
    assert uri.startswith("file://") and uri.endswith("/%FF.jpg")
    uri.encode("utf-8")  # storable in PostgreSQL text
    assert os.fsencode(uri_to_path(uri)) == raw
    assert display_path(uri).endswith("/\\xff.jpg")
    assert (load_rgb(uri) == load_rgb(path)).all()
    assert probe(uri).ok
    plain = tmp_path / "plain %FF é.jpg"
    assert path_to_uri(plain) == str(plain) and uri_to_path(str(plain)) == str(plain)
    assert safe_text("a\x00b\udcff") == "a\\x00b\\udcff"
