"""The wheel and the Docker image: built from exactly what the Dockerfile copies, the wheel
holds every source and data file (curation rules, static client, migrations), and
its `dataengine` script runs the main job from a fresh virtualenv outside the repository.

Docker itself is not exercised here (no daemon on the test machines): the Dockerfile is
checked statically: what it COPYs exists and is what the wheel needs, it installs the
project with pip, and its CMD is a command of the CLI.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "db", "annotator_ui", "scripts")
JUNK = ("__pycache__", "*.pyc", "*.pyo", "*.so", "*.egg-info")


def _dockerfile_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY instruction of the Dockerfile."""
    copies = []
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")  # join continued lines
    for line in text.splitlines():
        if not line.strip().upper().startswith("COPY "):
            continue
        words = shlex.split(line)
        if words:
            args = [w for w in words[1:] if not w.startswith("--")]
            copies.append((args[:-1], args[-1]))
    return copies


def _docker_context(dest: Path) -> Path:
    """Copy what the Dockerfile COPYs (minus .dockerignore'd junk) into ``dest``."""
    ignored = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    patterns = [*JUNK, *(p.rstrip("/").split("/")[-1] for p in ignored)]
    for sources, target in _dockerfile_copies():
        for src in sources:
            path = ROOT / src
            out = dest / (src if target in ("./", ".") else target)
            if path.is_dir():
                shutil.copytree(path, out, ignore=shutil.ignore_patterns(*patterns))
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)
    return dest


def _source_files() -> set[str]:
    """Every file of the importable packages in the repository (posix, relative)."""
    files = set()
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*"):
            rel = path.relative_to(ROOT)
            if path.is_file() and not any(
                fnmatch.fnmatch(part, pat) for part in rel.parts for pat in JUNK
            ):
                files.add(rel.as_posix())
    return files


def test_dockerfile_copies_what_the_wheel_needs_and_runs_the_cli() -> None:
    copied = {s for sources, _ in _dockerfile_copies() for s in sources}
    assert {"pyproject.toml", "README.md", *PACKAGES} <= copied
    for src in copied:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install ." in text, "the image must install the project like the wheel test"
    cmd = next(ln for ln in text.splitlines() if ln.startswith("CMD"))
    argv = json.loads(cmd[3:])
    assert argv[0] == "dataengine"  # the [project.scripts] entry point
    from typer.main import get_command

    from scripts.cli import app

    assert argv[1] in get_command(app).commands  # type: ignore[attr-defined]
    ignored = (ROOT / ".dockerignore").read_text()
    for junk in (".venv", "var", "__pycache__"):
        assert junk in ignored, f".dockerignore should leave out {junk}"


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{shlex.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    return proc


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs_the_main_job(
    tmp_path: Path, shared_data: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DATAENGINE_"))}
    # 1. the wheel, built from the Docker build context only
    src = _docker_context(tmp_path / "context")
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(dist), str(src)],
        tmp_path,
        env,
    )
    (wheel,) = dist.glob("dataengine-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "dataengine = scripts.cli:main" in zf.read(entry_points).decode()
    for needed in (
        "engine/curation/default_rules.toml",
        "annotator_ui/static/index.html",
        "db/migrations/env.py",
        "db/migrations/script.py.mako",
    ):
        assert needed in names, f"the wheel lacks {needed}"
    missing = _source_files() - names
    assert not missing, f"the wheel lacks {sorted(missing)[:10]}"
    assert not [n for n in names if n.startswith("tests/")]

    # 2. a fresh venv that sees the shared venv's third-party packages, not the repo's
    # editable install: a plain path line in a .pth adds the shared site-packages, and the
    # .pth files inside it (the editable finder) are not executed.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    fresh_site = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            tmp_path,
            env,
        ).stdout.strip()
    )
    (fresh_site / "shared_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q"]
        + [str(wheel)],
        tmp_path,
        env,
    )
    where = _run(
        [str(py), "-c", "import engine, scripts.cli; print(engine.__file__)"], tmp_path, env
    )
    assert Path(where.stdout.strip()).is_relative_to(fresh_site), where.stdout

    # 3. the main job through the installed script, from a folder outside the repository
    work = tmp_path / "work"
    photos = work / "photos"
    photos.mkdir(parents=True)
    from PIL import Image

    for name in ("astronaut.jpg", "dog.jpg"):
        with Image.open(shared_data / "samples" / name) as im:
            im.convert("RGB").resize((96, 72)).save(photos / f"{Path(name).stem}.png")
    env["DATAENGINE_DATA_DIR"] = str(work / "var")
    exe = str(venv / "bin" / "dataengine")
    version = _run([exe, "--version"], work, env).stdout.strip()
    from importlib.metadata import version as dist_version

    assert version == f"dataengine {dist_version('dataengine')}"
    assert json.loads(_run([exe, "db", "upgrade", "-j"], work, env).stdout)["revision"]
    ingested = json.loads(_run([exe, "ingest", str(photos), "-p", "p", "-j"], work, env).stdout)
    assert ingested["added"] == 2
    filled = json.loads(
        _run([exe, "prefill", "-p", "p", "-b", "classical", "-j"], work, env).stdout
    )
    assert filled["done"] == 2 and filled["failed"] == 0
    curated = json.loads(_run([exe, "curate", "auto", "-p", "p", "-j"], work, env).stdout)
    assert curated["images"] == 2 and curated["rules"] == "default"
    out = work / "coco"
    exported = json.loads(
        _run([exe, "export", "-p", "p", "-f", "coco", "-o", str(out), "-j"], work, env).stdout
    )
    assert Path(exported["out"]) == out and (out / "manifest.json").exists()
    assert (work / "var" / "dataengine.db").exists()
