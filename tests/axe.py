"""axe-core for the browser tests: the automated accessibility check, run in Chromium.

``ensure_axe()`` returns the path of ``axe.min.js`` in the user cache
(``~/.cache/dataengine/node_modules/axe-core``), installing it there with npm on first use
(never into the repository). ``violations(page, rules)`` injects it into a Playwright page
and returns axe's violations of the given rules (default: colour contrast) as
``[{id, nodes: [html snippets], summary}]``. The app's Content-Security-Policy forbids
inline scripts, so the page must come from a context made with ``bypass_csp=True``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CACHE = Path.home() / ".cache" / "dataengine"
AXE = CACHE / "node_modules" / "axe-core" / "axe.min.js"
AXE_VERSION = "4"  # any 4.x: the rule ids used here are stable across it


def ensure_axe() -> Path:
    """Path of axe.min.js; installs axe-core with npm into the cache when missing. Skips the
    test when npm is missing, except under ``CI`` (then it fails)."""
    if AXE.exists():
        return AXE
    npm = shutil.which("npm")
    if npm is None:
        why = "the accessibility check needs npm to install axe-core (apt-get install -y npm)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI is set, so this is a failure rather than a skip")
        pytest.skip(why)
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(CACHE),
            f"axe-core@{AXE_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0 or not AXE.exists():
        pytest.fail(f"npm could not install axe-core into {CACHE}: {done.stderr[-2000:]}")
    return AXE


def violations(page: Any, rules: tuple[str, ...] = ("color-contrast",)) -> list[dict[str, Any]]:
    """axe-core's violations of ``rules`` on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(ensure_axe()))
    found: list[dict[str, Any]] = page.evaluate(
        """async (rules) => {
          const r = await axe.run(document, {runOnly: {type: 'rule', values: rules}});
          return r.violations.map((v) => ({id: v.id, summary: v.help,
            nodes: v.nodes.map((n) => n.html + ' :: ' + (n.failureSummary || ''))}));
        }""",
        list(rules),
    )
    return found
