"""Object storage: image URIs on ``s3://``, ``gs://``, ``az://``, ``http(s)://`` and ``file://``.

Everything goes through fsspec; credentials come from the environment as each fsspec backend
reads them (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_ENDPOINT_URL`` for s3fs,
``GOOGLE_APPLICATION_CREDENTIALS`` for gcsfs, ``AZURE_STORAGE_*`` for adlfs). A backend whose
package is missing raises :class:`StorageError` naming the package to install.

A *remote* uri is one with a scheme in :data:`REMOTE_SCHEMES`; anything else (a path, a
``file://`` uri) is a local file and keeps going through ``engine.uris.uri_to_path``.
Reads are bounded: :func:`read_bytes` refuses an object larger than ``max_bytes`` before
reading it when the store reports a size, and stops after ``max_bytes + 1`` bytes otherwise,
so a lying or endless server costs at most that much memory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REMOTE_SCHEMES: tuple[str, ...] = ("s3", "gs", "gcs", "az", "abfs", "abfss", "http", "https")
# The package that provides each scheme's fsspec backend (named in the error when missing).
PACKAGES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
PACKAGES |= {"abfss": "adlfs", "http": "aiohttp", "https": "aiohttp"}
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
CHUNK = 1 << 20


class StorageError(OSError):
    """An object cannot be listed or read; ``str(err)`` says why (and names the fix)."""


def scheme_of(uri: str | os.PathLike[str]) -> str:
    """The lower-case scheme of a uri ('' for a plain path)."""
    text = os.fspath(uri)
    if "://" not in text:
        return ""
    return text.split("://", 1)[0].lower()


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for an object-storage or web uri (not a local path, not ``file://``)."""
    return scheme_of(uri) in REMOTE_SCHEMES


def filesystem(uri: str) -> tuple[Any, str]:
    """The fsspec filesystem for ``uri`` and the path within it.

    Raises :class:`StorageError` for an unknown scheme, or a missing backend package (with the
    ``pip install`` that fixes it).
    """
    scheme = scheme_of(uri)
    if scheme not in REMOTE_SCHEMES:
        raise StorageError(
            f"unsupported uri scheme {scheme!r} in {uri!r}; use a local path or one of "
            + ", ".join(f"{s}://" for s in REMOTE_SCHEMES)
        )
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri)
    except ImportError as err:
        package = PACKAGES.get(scheme, "the fsspec backend")
        raise StorageError(
            f"{scheme}:// needs the {package} package: pip install {package} ({err})"
        ) from err
    except ValueError as err:
        raise StorageError(f"bad uri {uri!r}: {err}") from err


def _reason(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return "not found"
    if isinstance(err, PermissionError):
        return "access denied (check the credentials in the environment)"
    text = str(err) or type(err).__name__
    return text.splitlines()[0][:300]


def object_size(uri: str) -> int | None:
    """The object's size in bytes as the store reports it (None when it does not say).

    Raises :class:`StorageError` (``not found`` ...) when the object cannot be reached.
    """
    fs, path = filesystem(uri)
    try:
        info = fs.info(path)
    except (OSError, ValueError) as err:
        raise StorageError(f"unreadable: {_reason(err)}") from err
    size = info.get("size")
    return int(size) if size is not None else None


def read_bytes(uri: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """All bytes of a remote object, at most ``max_bytes``.

    Raises :class:`StorageError` with a reason recorded as is at ingest: ``unreadable: not
    found`` and the like, or ``too large: ...`` (refused from the reported size before any
    byte is read, or after ``max_bytes + 1`` bytes when the size is unknown).
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as f:
            size = getattr(f, "size", None)
            if size is not None and int(size) > max_bytes:
                raise StorageError(_too_large(int(size), max_bytes))
            data = f.read(max_bytes + 1)
    except StorageError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        raise StorageError(f"unreadable: {_reason(err)}") from err
    if len(data) > max_bytes:
        raise StorageError(_too_large(None, max_bytes))
    return data


def _too_large(size: int | None, max_bytes: int) -> str:
    what = f"{size} bytes" if size is not None else "more bytes"
    return f"too large: {what} than the {max_bytes} byte limit (DATAENGINE_MAX_IMAGE_BYTES)"


def iter_chunks(uri: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[bytes]:
    """The object's bytes in chunks of about 1 MiB (for streaming it to a client).

    The object is opened before the first chunk is yielded; errors then are
    :class:`StorageError`. Stops with StorageError past ``max_bytes``.
    """
    fs, path = filesystem(uri)
    try:
        f = fs.open(path, "rb")
    except (OSError, ValueError) as err:
        raise StorageError(f"unreadable: {_reason(err)}") from err
    return _chunks(f, max_bytes)


def _chunks(f: Any, max_bytes: int) -> Iterator[bytes]:
    sent = 0
    with f:
        while block := f.read(CHUNK):
            sent += len(block)
            if sent > max_bytes:
                raise StorageError(_too_large(None, max_bytes))
            yield block


def list_objects(prefix: str) -> list[str]:
    """Every object under a remote prefix (recursive), as full uris, sorted.

    Hidden names (a path part starting with ``.``) are left out, as the local walk does.
    Raises :class:`StorageError` when the prefix cannot be listed.
    """
    fs, path = filesystem(prefix)
    scheme = scheme_of(prefix)
    if scheme in ("http", "https"):
        raise StorageError(
            f"{prefix!r}: a web server cannot be listed; give the image uris in a manifest "
            "(dataengine ingest --manifest uris.csv)"
        )
    try:
        found = fs.find(path)
    except (OSError, ValueError) as err:
        raise StorageError(f"cannot list {prefix}: {_reason(err)}") from err
    uris = []
    for p in sorted(found):
        rel = p[len(path.rstrip("/")) :] if p.startswith(path.rstrip("/")) else p
        if any(part.startswith(".") for part in rel.split("/") if part):
            continue
        uris.append(fs.unstrip_protocol(p) if scheme != "az" else f"az://{p}")
    return uris


def presigned_url(uri: str, *, expires_s: int) -> str | None:
    """A time-limited GET url for an ``s3://`` object (None for other schemes)."""
    if scheme_of(uri) != "s3":
        return None
    fs, path = filesystem(uri)
    try:
        return str(fs.sign(path, expiration=expires_s))
    except (OSError, ValueError, NotImplementedError) as err:
        raise StorageError(f"cannot sign {uri}: {_reason(err)}") from err


def copy_to(uri: str, dest: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Copy an object to a local file (via ``dest.part``, renamed when complete)."""
    tmp = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as out:
            for block in iter_chunks(uri, max_bytes=max_bytes):
                out.write(block)
        tmp.replace(dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def local_copy(src: str, dest: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Copy a stored uri (remote or local) to ``dest``."""
    if is_remote(src):
        copy_to(src, dest, max_bytes=max_bytes)
        return
    from engine.uris import uri_to_path

    shutil.copyfile(uri_to_path(src), dest)
