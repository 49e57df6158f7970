"""Pass/fail rules of the automatic curation stage, from a TOML file and/or flags.

File format: see ``default_rules.toml`` beside this module (sections ``[min]``, ``[max]``,
``[duplicates]``). ``evaluate(rules, signals)`` returns every failure's reason; an empty
list means the image passes.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.toml")
SECTIONS = ("min", "max", "duplicates")


@dataclass(frozen=True)
class Rules:
    """Thresholds by signal name; ``drop_duplicates`` keeps only the best of each cluster."""

    minimum: dict[str, float] = field(default_factory=dict)
    maximum: dict[str, float] = field(default_factory=dict)
    drop_duplicates: bool = True
    radius: int = 10
    source: str = "default"

    def with_overrides(
        self, *, minimum: dict[str, float] | None = None, maximum: dict[str, float] | None = None
    ) -> Rules:
        """A copy with some thresholds replaced (e.g. from command-line flags)."""
        return replace(
            self,
            minimum={**self.minimum, **(minimum or {})},
            maximum={**self.maximum, **(maximum or {})},
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, key-sorted description (stored with decisions and in export manifests)."""
        return {
            "min": dict(sorted(self.minimum.items())),
            "max": dict(sorted(self.maximum.items())),
            "duplicates": {"drop": self.drop_duplicates, "radius": self.radius},
            "source": self.source,
        }


def _thresholds(section: Any, name: str, where: str) -> dict[str, float]:
    if not isinstance(section, dict):
        raise ValueError(f"{where}: [{name}] must be a table of signal = number")
    out = {}
    for key, value in section.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{where}: [{name}] {key} must be a finite number, got {value!r}")
        out[str(key)] = float(value)
    return out


def parse_rules(data: dict[str, Any], *, source: str = "<dict>") -> Rules:
    """Rules from a parsed TOML document; ValueError names the bad key and the fix."""
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ValueError(
            f"{source}: unknown section(s) {', '.join(sorted(unknown))}; use {', '.join(SECTIONS)}"
        )
    dup = data.get("duplicates", {})
    if not isinstance(dup, dict) or set(dup) - {"drop", "radius"}:
        raise ValueError(f"{source}: [duplicates] takes only drop = true|false and radius = bits")
    radius = dup.get("radius", 10)
    if isinstance(radius, bool) or not isinstance(radius, int) or not 0 <= radius <= 64:
        raise ValueError(f"{source}: [duplicates] radius must be an integer 0..64, got {radius!r}")
    drop = dup.get("drop", True)
    if not isinstance(drop, bool):
        raise ValueError(f"{source}: [duplicates] drop must be true or false, got {drop!r}")
    return Rules(
        minimum=_thresholds(data.get("min", {}), "min", source),
        maximum=_thresholds(data.get("max", {}), "max", source),
        drop_duplicates=drop,
        radius=radius,
        source=source,
    )


def load_rules(path: Path | None = None) -> Rules:
    """Rules from a TOML file (None: the shipped ``default_rules.toml``)."""
    p = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ValueError(f"rules file {p} not found; pass an existing --rules file") from err
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"rules file {p} is not valid TOML: {err}") from err
    return parse_rules(data, source="default" if path is None else p.name)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def evaluate(rules: Rules, signals: dict[str, Any]) -> list[str]:
    """Every failed rule as a reason string, in a stable order; [] means pass.

    ``signals`` is the flat dict stored in ``Image.signals`` (quality, composition and
    aesthetic signals together). Missing or non-numeric signals are skipped.
    """
    reasons = []
    for name, lo in sorted(rules.minimum.items()):
        v = signals.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool) and v < lo:
            reasons.append(f"{name} {_fmt(v)} < min {_fmt(lo)}")
    for name, hi in sorted(rules.maximum.items()):
        v = signals.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool) and v > hi:
            reasons.append(f"{name} {_fmt(v)} > max {_fmt(hi)}")
    return reasons
