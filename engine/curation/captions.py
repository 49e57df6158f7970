"""Draft captions from an image's accepted mask labels, for a specialist to rewrite.

``draft_caption(["dog", "dog", "person"])`` -> ``"a photo of two dogs and a person"``.
Labels are ordered by their total mask area (largest first) when areas are given.
"""

from __future__ import annotations

from collections.abc import Sequence

NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
_IRREGULAR = {
    "person": "people",
    "mouse": "mice",
    "sheep": "sheep",
    "skis": "skis",
    "scissors": "scissors",
}


def plural(noun: str) -> str:
    """English plural of a (last word of a) label: dog -> dogs, bus -> buses, knife -> knives."""
    head, _, last = noun.rpartition(" ")
    low = last.lower()
    if low in _IRREGULAR:
        word = _IRREGULAR[low]
    elif low.endswith(("s", "x", "z", "ch", "sh")):
        word = last + "es"
    elif low.endswith("y") and len(low) > 1 and low[-2] not in "aeiou":
        word = last[:-1] + "ies"
    elif low.endswith("fe"):
        word = last[:-2] + "ves"
    elif low.endswith("f") and not low.endswith("ff"):
        word = last[:-1] + "ves"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def draft_caption(labels: Sequence[str | None], areas: Sequence[float] | None = None) -> str:
    """A plain caption naming the labelled objects, e.g. "a photo of two dogs and a person".

    Empty or missing labels are ignored; with no label at all the draft is "a photo".
    """
    if areas is not None and len(areas) != len(labels):
        raise ValueError("labels and areas must have the same length")
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for i, label in enumerate(labels):
        name = (label or "").strip()
        if not name:
            continue
        counts[name] = counts.get(name, 0) + 1
        totals[name] = totals.get(name, 0.0) + (float(areas[i]) if areas is not None else 0.0)
    if not counts:
        return "a photo"
    order = sorted(counts, key=lambda n: (-totals[n], -counts[n], n))
    parts = []
    for name in order:
        n = counts[name]
        if n == 1:
            parts.append(f"{_article(name)} {name}")
        else:
            parts.append(f"{NUMBERS[n] if n < len(NUMBERS) else 'many'} {plural(name)}")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"a photo of {listed}"
