"""Real third-party readers (Datumaro, labelme) in their own cached virtualenvs.

Their pins clash with the project's (Datumaro wants other pillow/pandas/pyarrow), so
each lives in ``~/.cache/dataengine/<name>-venv``, created on first use with pip (a
package registry, never a model hub) and reused by later runs. Tests run the tool in
a subprocess with that venv's python and skip, naming the cause, when it cannot be made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CACHE = Path(os.environ.get("DATAENGINE_TOOL_VENVS", Path.home() / ".cache" / "dataengine"))


def tool_python(name: str, requirement: str, probe: str) -> Path:
    """The python of the cached venv ``<name>-venv`` that has ``requirement`` installed.

    ``probe`` is a python statement that must succeed in it (e.g. ``import datumaro``).
    Skips the test (with pip's last lines) when the venv cannot be created.
    """
    venv = CACHE / f"{name}-venv"
    python = venv / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0
    ):
        return python
    partial = CACHE / f"{name}-venv.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", str(partial)],
        [str(partial / "bin" / "python"), "-m", "pip", "install", "-q", requirement],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            pytest.skip(f"cannot set up {requirement} in {venv}: {done.stderr[-500:]}")
    shutil.rmtree(venv, ignore_errors=True)
    os.replace(partial, venv)  # the venv's python is a symlink: a moved venv still runs
    return python


def run_tool(python: Path, script: str, *args: str) -> Any:
    """Run ``script`` with ``python`` and ``args``; returns the JSON it prints last."""
    done = subprocess.run(
        [str(python), "-c", script, *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
