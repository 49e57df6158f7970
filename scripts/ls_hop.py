"""Hops of the Label Studio round trip (``scripts/ls_roundtrip.py``): what each step expected
and got, the table they print as, and the guard that turns a failing step into a failing hop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.interop.label_studio_api import LabelStudioError


@dataclass
class Hop:
    hop: str
    expected: Any
    got: Any

    @property
    def ok(self) -> bool:
        return bool(self.expected == self.got)


def hop_table(hops: list[Hop]) -> str:
    """The hops as a fixed-width table (hop | expected | got | ok)."""
    width = max(len(h.hop) for h in hops)
    lines = [f"{'hop':<{width}} | {'expected':>10} | {'got':>10} | ok", "-" * (width + 33)]
    lines += [
        f"{h.hop:<{width}} | {h.expected!s:>10} | {h.got!s:>10} | {'yes' if h.ok else 'NO'}"
        for h in hops
    ]
    return "\n".join(lines)


ERRORS = (LabelStudioError, KeyError, IndexError, TypeError, ValueError, StopIteration)


def error_hop(name: str, err: Exception) -> Hop:
    return Hop(f"{name}: ran", "ok", f"{type(err).__name__}: {str(err)[:160]}")


def guard(name: str, phase: Any, *args: Any) -> list[Hop]:
    """``phase(*args)``'s hops, or one failing hop naming the error (the run goes on)."""
    try:
        return list(phase(*args))
    except ERRORS as err:
        return [error_hop(name, err)]
