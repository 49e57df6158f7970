"""The scripted annotator of the flywheel simulator: its time model (``Costs``), its review
policy (``Policy``) and the ``Annotator`` that works a lease over the real HTTP API (see
``scripts/simulate_flywheel.py`` for the policy and the sources of the default costs)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.flywheel import events as ek
from engine.flywheel.clicker import next_click
from engine.masks import decode_rle, encode_rle, mask_iou
from scripts.sim_dataset import Instance

SIM_PREFIX = "sim-"  # session ids of simulated events (left out when fitting costs)


@dataclass
class Costs:
    """Seconds per simulated action (see the module docstring for sources)."""

    open: float = 2.0
    accept: float = 1.5
    reject: float = 1.0
    click: float = 2.5
    fix_start: float = 1.0
    commit: float = 1.0
    label: float = 1.5
    submit: float = 1.0


@dataclass
class Policy:
    accept_iou: float = 0.85
    fix_iou: float = 0.5
    target_iou: float = 0.85
    max_clicks: int = 20
    min_area: int = 0


class Annotator:
    """One simulated person working through the queue over HTTP."""

    def __init__(self, client: Any, token: str, costs: Costs, policy: Policy,
                 jitter: float = 0.0, seed: int = 0) -> None:  # fmt: skip
        self.c, self.costs, self.policy = client, costs, policy
        self.jitter, self.rng = jitter, np.random.default_rng([seed, 7])
        self.expected_ms = 0.0
        self.h = {"Authorization": f"Bearer {token}"}
        self.session_id = f"{SIM_PREFIX}{uuid.uuid4().hex[:16]}"
        self.t_ms, self.seq = 0.0, 0
        self.buffer: list[dict[str, Any]] = []
        self.decodes = 0

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        r = self.c.request(method, url, headers=self.h, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {url} -> {r.status_code}: {r.text[:300]}")
        return r.json()

    def event(self, kind: str, cost: float, image_id: int, lease_id: int,
              mask_id: int | None = None, **payload: Any) -> None:  # fmt: skip
        self.expected_ms += cost * 1000.0  # the cost model's mean, before the noise
        if self.jitter and cost:  # mean-preserving log-normal noise on each action's time
            cost *= float(self.rng.lognormal(-(self.jitter**2) / 2, self.jitter))
        self.t_ms += cost * 1000.0
        self.seq += 1
        self.buffer.append({
            "uuid": str(uuid.uuid4()), "session_id": self.session_id, "seq": self.seq,
            "kind": kind, "client_time": self.t_ms, "visible": True, "image_id": image_id,
            "mask_id": mask_id, "lease_id": lease_id, "payload": payload,
        })  # fmt: skip

    def flush(self) -> None:
        if self.buffer:
            out = self._call("POST", "/api/events", json={"events": self.buffer})
            if out.get("rejected"):
                raise RuntimeError(f"events rejected: {out['rejected']}")
            self.buffer = []

    def _clicks(self, image_id: int, inst: Instance, start: np.ndarray, prior_id: int | None,
                ev: Callable[..., None], target: str) -> tuple[np.ndarray, int]:  # fmt: skip
        """RITM clicks through the decode endpoint; returns (best mask, clicks)."""
        pred, best, best_iou = start, start, mask_iou(start, inst.mask, inst.ignore)
        points: list[list[float]] = []
        labels: list[int] = []
        not_clicked = np.ones_like(inst.mask)
        input_id: str | None = None
        n = 0
        while n < self.policy.max_clicks and best_iou < self.policy.target_iou:
            x, y, positive = next_click(inst.mask, pred, inst.ignore, not_clicked)
            not_clicked[int(y), int(x)] = False
            points.append([x, y])
            labels.append(1 if positive else 0)
            n += 1
            extra = self.costs.open / 2 if (n == 1 and target == "new") else 0.0
            ev(
                ek.PROMPT_CLICK,
                self.costs.click + extra,
                x=x,
                y=y,
                positive=positive,
                target=target,
            )
            body: dict[str, Any] = {"points": points, "labels": labels}
            if input_id:
                body["mask_input_id"] = input_id
            elif prior_id is not None:
                body["mask_id"] = prior_id
            out = self._call("POST", f"/api/images/{image_id}/decode", json=body)
            self.decodes += 1
            input_id = out.get("mask_input_id")
            pred = decode_rle(out["rle"])
            iou = mask_iou(pred, inst.mask, inst.ignore)
            if iou > best_iou:
                best, best_iou = pred, iou
        return best, n

    def do_image(self, task: dict[str, Any], gt: list[Instance]) -> dict[str, int]:
        lease_id, image_id = task["lease_id"], task["image"]["id"]
        c, p = self.costs, self.policy
        stats = defaultdict(int)

        def ev(kind: str, cost: float, mask_id: int | None = None, **payload: Any) -> None:
            self.event(kind, cost, image_id, lease_id, mask_id, **payload)

        ev(ek.IMAGE_OPEN, 0.0, arm=task["arm"])
        t_open, e_open = self.t_ms, self.expected_ms
        masks = self._call("GET", f"/api/images/{image_id}/masks")["masks"]
        shown = [m for m in masks if m["status"] == "proposed"]
        gt = [g for g in gt if g.mask.sum() >= max(p.min_area, 1)]
        unmatched = list(range(len(gt)))
        first = True
        for m in sorted(shown, key=lambda m: -m["area"]):
            pm = decode_rle(m["rle"])
            ious = [(mask_iou(pm, gt[i].mask, gt[i].ignore), i) for i in unmatched]
            best_iou, gi = max(ious) if ious else (0.0, -1)
            look = c.open if first else 0.0
            first = False
            body = {"version": m["version"], "lease_id": lease_id}
            if best_iou >= p.accept_iou:
                self._call("POST", f"/api/masks/{m['id']}/accept", json=body)
                ev(ek.MASK_ACCEPT, c.accept + look, m["id"])
                unmatched.remove(gi)
                stats["accepted"] += 1
            elif best_iou >= p.fix_iou:
                ev(ek.FIX_START, c.fix_start + look, m["id"])
                fixed, n = self._clicks(image_id, gt[gi], pm, m["id"],
                                        lambda k, s, **kw: ev(k, s, **kw), "fix")  # fmt: skip
                new = self._call("POST", f"/api/masks/{m['id']}/fix",
                                 json={**body, "rle": encode_rle(fixed), "label": gt[gi].label})  # fmt: skip
                ev(
                    ek.OBJECT_COMMIT,
                    c.commit,
                    new["id"],
                    parent_id=m["id"],
                    label=gt[gi].label,
                    clicks=n,
                )
                unmatched.remove(gi)
                stats["fixed"] += 1
                stats["fix_clicks"] += n
            else:
                self._call("POST", f"/api/masks/{m['id']}/reject", json=body)
                ev(ek.MASK_REJECT, c.reject + look, m["id"])
                stats["rejected"] += 1
        for gi in sorted(unmatched, key=lambda i: -int(gt[i].mask.sum())):
            inst = gt[gi]
            empty = np.zeros_like(inst.mask)
            drawn, n = self._clicks(image_id, inst, empty, None,
                                    lambda k, s, **kw: ev(k, s, **kw), "new")  # fmt: skip
            if not drawn.any():
                ev(ek.OBJECT_CANCEL, c.commit)
                stats["gave_up"] += 1
                continue
            ev(ek.LABEL_SET, c.label, label=inst.label)
            new = self._call("POST", f"/api/images/{image_id}/masks",
                             json={"rle": encode_rle(drawn), "label": inst.label, "lease_id": lease_id})  # fmt: skip
            ev(ek.OBJECT_COMMIT, c.commit, new["id"], parent_id=None, label=inst.label, clicks=n)
            stats["added"] += 1
            stats["add_clicks"] += n
        ev(ek.SUBMIT, c.submit)
        stats["ledger_ms"] = self.t_ms - t_open  # the simulated person's own clock
        stats["expected_ms"] = self.expected_ms - e_open  # its cost model's mean
        stats["prefill_arm"] = int(task["arm"] == "prefill")
        self.flush()
        self._call("POST", f"/api/tasks/{lease_id}/submit", json={"ops": []})
        self.t_ms += 5000.0  # next image loads; gaps ending at image_open never count
        return dict(stats)

    def work(self, project_id: int, gt_by_id: dict[int, list[Instance]],
             on_image: Callable[[int, dict[str, int]], None] | None = None) -> int:  # fmt: skip
        done = 0
        self.event(ek.SESSION_START, 0.0, None, None)  # type: ignore[arg-type]
        while True:
            r = self.c.post("/api/tasks/next", json={"project_id": project_id}, headers=self.h)
            if r.status_code == 404:
                break
            if r.status_code >= 400:
                raise RuntimeError(f"tasks/next -> {r.status_code}: {r.text[:300]}")
            task = r.json()
            stats = self.do_image(task, gt_by_id.get(task["image"]["id"], []))
            done += 1
            if on_image:
                on_image(task["image"]["id"], stats)
        self.flush()
        return done
