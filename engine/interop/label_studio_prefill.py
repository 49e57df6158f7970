"""What Label Studio's "retrieve predictions" shows for an image: the stored pre-fill, as the
annotator would see it in the app.

- Only what the review canvas shows by default: accepted masks and *confident* proposals
  (``db.mask_listing.list_masks``); images served in the control arm get no proposals at all.
- Nothing is computed here: an image with no ``prefill`` row yet is reported as *pending*
  (the caller queues its pre-fill and answers an empty prediction for now).
- Each region carries its ``score`` (calibrated confidence, else predicted IoU, else 1.0
  for human masks) and, for proposals, its ``model_version`` (the model version's name);
  the prediction's ``model_version`` is the newest one among them.
- Region ids are ``m<mask id>``: the webhook and the importer recognise a region that kept
  its id as the proposal it came from (accept when the pixels are unchanged, else a fix).
- A mask whose label is not one of the project's labeling config's labels (or has none) is
  sent with ``brushlabels: []``, an unlabelled region in Label Studio's terms, never as the
  config's first label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from db import mask_listing
from db.model_versions import version_names
from db.models import Image
from db.prefills import any_prefill
from engine.interop.exporters.label_studio import mask_regions
from engine.interop.label_studio import LabelConfig


@dataclass
class ShownPrefill:
    """One task's prediction: ``result`` regions, mean ``score``, ``model_version``, and
    ``pending`` (True when the image has no pre-fill yet)."""

    result: list[dict[str, Any]] = field(default_factory=list)
    score: float = 0.0
    model_version: str = ""
    pending: bool = False

    def as_prediction(self) -> dict[str, Any]:
        return {"result": self.result, "score": self.score, "model_version": self.model_version}


def is_prefilled(session: Session, *, image_id: int) -> bool:
    """Whether any model version pre-filled the image (a ``prefill`` row, done or failed)."""
    return any_prefill(session, image_id=image_id)


def shown_prefill(
    session: Session,
    *,
    image: Image,
    cfg: LabelConfig,
    arm: str,
    default_version: str,
) -> ShownPrefill:
    """The image's pre-fill as Label Studio regions (see the module docstring).

    ``arm``: ``"prefill"`` or ``"control"`` (``db.lease_lookups.arm_of``). ``default_version``
    names the prediction when no proposal carries a model version (human masks only).
    """
    if not is_prefilled(session, image_id=image.id):
        return ShownPrefill(model_version=default_version, pending=True)
    rows = mask_listing.list_masks(session, image_id=image.id, proposals=arm == "prefill")
    rows = sorted(rows, key=lambda m: m.id)
    version_ids = {m.model_version_id for m in rows if m.model_version_id is not None}
    names = version_names(session, ids=version_ids)
    allowed = set(cfg.labels)
    regions: list[dict[str, Any]] = []
    for m in rows:
        label = m.label if m.label is not None and (not allowed or m.label in allowed) else None
        for region in mask_regions(
            m, image, boxes=False, brush_name=cfg.brush, image_name=cfg.image, label=label
        ):
            if label is None:
                region["value"]["brushlabels"] = []
            if m.model_version_id is not None:
                region["model_version"] = names.get(m.model_version_id, "")
            regions.append(region)
    scores = [float(r["score"]) for r in regions]
    proposal_versions = [names[i] for i in sorted(version_ids) if i in names]
    return ShownPrefill(
        result=regions,
        score=sum(scores) / len(scores) if scores else 0.0,
        model_version=proposal_versions[-1] if proposal_versions else default_version,
    )
