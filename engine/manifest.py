"""Ingest manifests: a CSV, JSONL or Parquet file listing image uris, one per row.

The uri column is the first of ``uri``, ``url``, ``path``, ``image`` present (CSV header,
JSONL object key, Parquet column); a CSV without such a header is read as one uri per line,
first column; a JSONL line may also be a bare JSON string. Local paths that are relative
are taken relative to the manifest's folder. Rows without a usable uri are returned as
:class:`ManifestRow` with a ``problem`` (ingest lists them as skipped), so one bad row never
stops the batch.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from engine.storage import is_remote

URI_COLUMNS: tuple[str, ...] = ("uri", "url", "path", "image")
FORMATS: dict[str, str] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
FORMATS |= {".parquet": "parquet", ".pq": "parquet"}


class ManifestError(ValueError):
    """The manifest itself cannot be read (missing, unknown format, no uri column)."""


@dataclass(frozen=True)
class ManifestRow:
    """One row: the uri to ingest (remote uri or absolute local path), or the problem."""

    line: int
    uri: str | None
    problem: str | None = None


def _resolve(text: str, base: Path) -> str:
    text = text.strip()
    if is_remote(text) or text.startswith("file://"):
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _row(line: int, value: object, base: Path) -> ManifestRow:
    if not isinstance(value, str) or not value.strip():
        return ManifestRow(line, None, f"bad manifest row: row {line} has no uri")
    if "\x00" in value:
        return ManifestRow(line, None, f"bad manifest row: row {line} has a NUL in the uri")
    return ManifestRow(line, _resolve(value, base))


def _pick(columns: list[str]) -> str | None:
    lowered = {c.strip().lower(): c for c in columns if isinstance(c, str)}
    for name in URI_COLUMNS:
        if name in lowered:
            return lowered[name]
    return None


def read_manifest(path: Path) -> list[ManifestRow]:
    """The rows of a manifest (module docstring); raises :class:`ManifestError`."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ManifestError(
            f"{path}: unknown manifest format {path.suffix!r}; use .csv, .jsonl or .parquet"
        )
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    base = path.resolve().parent
    try:
        if fmt == "csv":
            return _read_csv(path, base)
        if fmt == "jsonl":
            return _read_jsonl(path, base)
        return _read_parquet(path, base)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ManifestError(f"{path}: cannot read the manifest: {err}") from err


def _read_csv(path: Path, base: Path) -> list[ManifestRow]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        return []
    column = _pick(rows[0])
    if column is None:  # no header: one uri per line, first column
        return [_row(i + 1, r[0] if r else None, base) for i, r in enumerate(rows)]
    index = rows[0].index(column)
    return [_row(i + 2, r[index] if len(r) > index else None, base) for i, r in enumerate(rows[1:])]


def _read_jsonl(path: Path, base: Path) -> list[ManifestRow]:
    out = []
    with open(path, encoding="utf-8") as f:
        for i, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as err:
                out.append(
                    ManifestRow(i, None, f"bad manifest row: row {i} is not JSON ({err.msg})")
                )
                continue
            if isinstance(item, dict):
                column = _pick(list(item))
                item = item.get(column) if column else None
            out.append(_row(i, item, base))
    return out


def _read_parquet(path: Path, base: Path) -> list[ManifestRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ManifestError("Parquet manifests need pyarrow: pip install pyarrow") from err
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ManifestError(f"{path}: not a readable Parquet file: {err}") from err
    column = _pick(table.column_names)
    if column is None:
        raise ManifestError(
            f"{path}: no uri column; name one of: {', '.join(URI_COLUMNS)} "
            f"(columns: {', '.join(table.column_names)})"
        )
    return [_row(i + 1, v, base) for i, v in enumerate(table.column(column).to_pylist())]
