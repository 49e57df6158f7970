"""Benchmark: start-up cost of the `dataengine` CLI. Runs ``--help``, ``--version`` and every
``<cmd> --help`` in a fresh interpreter and prints, per command, the median wall seconds,
CPU seconds (user + system) and peak resident memory of the child process.

    .venv/bin/python scripts/bench_cli.py                   # every command, 3 runs each
    .venv/bin/python scripts/bench_cli.py --runs 5 --only root ingest "db upgrade"
    .venv/bin/python scripts/bench_cli.py --exe .venv/bin/dataengine   # the installed script

Target: each answers in under 1 s. On a shared, loaded machine wall time includes waiting for
a core; CPU seconds are the process's own cost.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.0


def command_paths() -> list[list[str]]:
    """Every command path of the CLI (``[]`` is the root, ``["db", "upgrade"]``...)."""
    import typer

    from scripts.cli import app

    paths: list[list[str]] = []

    def walk(cmd: Any, prefix: list[str]) -> None:
        paths.append(prefix)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


def run_once(exe: list[str], args: list[str]) -> tuple[float, float, float]:
    """(wall s, cpu s, peak RSS MiB) of one child running ``exe args``; raises on failure."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*exe, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = ""
    if proc.stderr:
        with proc.stderr:
            err = proc.stderr.read().decode() if proc.returncode != 0 else ""
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(args)} exited {proc.returncode}: {err.strip()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="Runs per command (median printed).")
    ap.add_argument(
        "--exe",
        default=None,
        help="The CLI to time (default: this interpreter with -m scripts.cli).",
    )
    ap.add_argument(
        "--only",
        nargs="+",
        default=None,
        help='Command paths to time with --help, e.g. root ingest "db upgrade".',
    )
    opts = ap.parse_args(argv)
    exe = [opts.exe] if opts.exe else [sys.executable, "-m", "scripts.cli"]
    if opts.only:
        cases = [[*([] if c == "root" else shlex.split(c)), "--help"] for c in opts.only]
    else:
        cases = [["--version"]] + [[*p, "--help"] for p in command_paths()]
    print(f"{'command':40s} {'wall s':>8s} {'cpu s':>8s} {'MiB':>7s}")
    worst = 0.0
    for args in cases:
        runs = [run_once(exe, args) for _ in range(opts.runs)]
        wall, cpu, rss = (statistics.median(r[i] for r in runs) for i in range(3))
        worst = max(worst, wall)
        print(f"{'dataengine ' + shlex.join(args):40s} {wall:8.2f} {cpu:8.2f} {rss:7.0f}")
    print(
        f"slowest: {worst:.2f} s wall (target {TARGET_S:.0f} s: {'met' if worst < TARGET_S else 'NOT met'});"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
