"""engine/manifest.py: CSV, JSONL and Parquet manifests of image uris."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.manifest import ManifestError, ManifestRow, read_manifest


def test_csv_with_and_without_header(tmp_path: Path) -> None:
    with_header = tmp_path / "a.csv"
    with_header.write_text("name,URL\nx,s3://b/x.jpg\ny,\nz,rel/z.png\n")
    assert read_manifest(with_header) == [
        ManifestRow(2, "s3://b/x.jpg"),
        ManifestRow(3, None, "bad manifest row: row 3 has no uri"),
        ManifestRow(4, str(tmp_path / "rel" / "z.png")),
    ]
    bare = tmp_path / "b.csv"
    bare.write_text("https://h/1.jpg\nfile:///data/2.jpg\n")
    assert [r.uri for r in read_manifest(bare)] == ["https://h/1.jpg", "file:///data/2.jpg"]
    assert read_manifest(tmp_path / "b.csv")[0].problem is None


def test_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"uri": "gs://b/1.png", "w": 3}\n\n"az://c/2.png"\n{"x": 1}\nnot json\n')
    rows = read_manifest(path)
    assert [(r.line, r.uri) for r in rows] == [
        (1, "gs://b/1.png"),
        (3, "az://c/2.png"),
        (4, None),
        (5, None),
    ]
    assert rows[3].problem is not None and rows[3].problem.startswith(
        "bad manifest row: row 5 is not JSON"
    )


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"image": ["s3://b/1.jpg", None], "n": [1, 2]}), path)
    assert [(r.uri, r.problem) for r in read_manifest(path)] == [
        ("s3://b/1.jpg", None),
        (None, "bad manifest row: row 2 has no uri"),
    ]
    wrong = tmp_path / "w.parquet"
    pq.write_table(pa.table({"file": ["x"]}), wrong)
    with pytest.raises(ManifestError, match="no uri column; name one of: uri, url, path, image"):
        read_manifest(wrong)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(ManifestError, match="not a readable Parquet file"):
        read_manifest(broken)


def test_refused_manifests(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="unknown manifest format '.txt'"):
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(ManifestError, match="no such manifest file"):
        read_manifest(tmp_path / "missing.csv")
    nul = tmp_path / "nul.csv"
    nul.write_text("uri\ns3://b/\x00.jpg\n")
    assert read_manifest(nul)[0].problem == "bad manifest row: row 2 has a NUL in the uri"
