"""The simulated annotators of ``scripts/bench_load.py``: one async httpx client each, the
per-image loop (the module docstring there), the ``Tally`` they fill, and the ``GET /livez``
reference with the same number of clients."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

ROUTES = ("next", "events", "heartbeat", "mask add", "submit")


@dataclass
class Tally:
    """Latencies (ms) and errors per route, stored events.

    ``events_stored``/``images_done``: in the measured window (for rates); ``events_sent_ok``
    and ``events_answered_stored``: over the whole run (events in batches answered 200, and
    the ``stored`` counts of those answers), compared with the rows in the database."""

    lat: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ROUTES})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTES, 0))
    samples: list[str] = field(default_factory=list)
    events_stored: int = 0
    images_done: int = 0
    events_sent_ok: int = 0
    events_answered_stored: int = 0
    client_cpu_s: float = 0.0
    ran_out: bool = False


def _rect_rle(h: int, w: int) -> dict[str, Any]:
    """Uncompressed COCO RLE (column-major) of a full-height band over the middle half."""
    left, right = w // 4, 3 * w // 4
    return {"size": [h, w], "counts": [left * h, (right - left) * h, (w - right) * h]}


def _events(n: int, session_id: str, seq: int, image_id: int, lease_id: int) -> list[dict]:
    kinds = ["image_open", "mask_select", "prompt_click", "prompt_click", "object_commit", "submit"]
    out = []
    for i in range(n):
        out.append(
            {
                "uuid": str(uuid.uuid4()),
                "session_id": session_id,
                "seq": seq + i,
                "kind": kinds[(seq + i) % len(kinds)],
                "client_time": time.perf_counter() * 1000,
                "image_id": image_id,
                "lease_id": lease_id,
                "payload": {"x": 10, "y": 12} if i % 2 else {},
            }
        )
    return out


async def annotator(
    base: str, token: str, project_id: int, start: float, end: float, tally: Tally
) -> None:
    """One annotator's loop (module docstring) until ``end``; requests that both start after
    ``start`` and end by ``end`` (monotonic seconds) are counted."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    session_id = uuid.uuid4().hex
    seq = 0
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=30, limits=limits
    ) as client:

        async def call(route: str, method: str, path: str, **kw: Any) -> Any:
            t0 = time.perf_counter()
            counted = time.monotonic() >= start
            r = await client.request(method, path, **kw)
            ms = (time.perf_counter() - t0) * 1000
            if route == "next" and r.status_code == 404:
                return r  # the queue ran out (not counted; see below)
            if counted and time.monotonic() <= end:
                tally.lat[route].append(ms)
                if r.status_code != 200:
                    tally.errors[route] += 1
                    if len(tally.samples) < 5:
                        tally.samples.append(f"{route} {r.status_code} {r.text[:160]}")
            return r

        while time.monotonic() < end:
            r = await call("next", "POST", "/api/tasks/next", json={"project_id": project_id})
            if r.status_code == 404:  # every image is taken: this annotator stops
                tally.ran_out = True
                return
            if r.status_code != 200:
                await asyncio.sleep(0.05)
                continue
            task = r.json()
            lease_id, image = task["lease_id"], task["image"]
            image_id = image["id"]
            for n in (6, 2):
                r = await call(
                    "events",
                    "POST",
                    "/api/events",
                    json={"events": _events(n, session_id, seq, image_id, lease_id)},
                )
                seq += n
                if r.status_code == 200:
                    stored = int(r.json().get("stored", 0))
                    tally.events_sent_ok += n
                    tally.events_answered_stored += stored
                    if start <= time.monotonic() <= end:
                        tally.events_stored += stored
                if n == 6:
                    await call("heartbeat", "POST", f"/api/tasks/{lease_id}/heartbeat", json={})
                    rle = _rect_rle(image["height"], image["width"])
                    await call(
                        "mask add",
                        "POST",
                        f"/api/images/{image_id}/masks",
                        json={"rle": rle, "label": "object", "lease_id": lease_id},
                    )
            r = await call("submit", "POST", f"/api/tasks/{lease_id}/submit", json={"ops": []})
            if r.status_code == 200 and start <= time.monotonic() <= end:
                tally.images_done += 1


async def drive(
    base: str, tokens: list[str], project_id: int, seconds: float, warmup: float
) -> Tally:
    """Every annotator at once: ``warmup`` seconds unrecorded, then ``seconds`` measured."""
    tally = Tally()
    start = time.monotonic() + warmup
    end = start + seconds
    cpu0 = time.process_time()
    tasks = [annotator(base, t, project_id, start, end, tally) for t in tokens]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=warmup + seconds + 60)
    tally.client_cpu_s = time.process_time() - cpu0
    return tally


async def reference(base: str, clients: int, seconds: float) -> tuple[float, float]:
    """The same number of clients on ``GET /livez`` (no database, no login) for ``seconds``:
    (requests/s, p50 ms), the ceiling this machine and client allow, measured in the same run."""
    import httpx

    lat: list[float] = []
    end = time.monotonic() + seconds

    async def one() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                r = await client.get("/livez")
                if r.status_code == 200 and time.monotonic() <= end:
                    lat.append((time.perf_counter() - t0) * 1000)

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(clients))), seconds + 60)
    return len(lat) / seconds, pct(lat, 50)


def pct(values: list[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method); NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
