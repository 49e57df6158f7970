"""Plain factory functions for tests: make rows with sensible defaults, override by keyword."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db.models import Image, Mask, ModelVersion, Project, User
from db.session import transaction
from db.users import create_user
from engine.masks import encode_rle, mask_bbox

PASSWORD = "correct-horse-battery"


def make_project(session: Session, **kw: Any) -> Project:
    kw.setdefault("name", f"project-{uuid.uuid4().hex[:8]}")
    kw.setdefault("labels", ["dog", "cat", "person"])
    project = Project(**kw)
    session.add(project)
    session.flush()
    return project


def make_user(session: Session, *, role: str = "annotator", name: str | None = None) -> User:
    return create_user(
        session, name=name or f"{role}-{uuid.uuid4().hex[:6]}", role=role, password=PASSWORD
    )


def make_image(session: Session, *, project: Project, **kw: Any) -> Image:
    kw.setdefault("uri", f"/nonexistent/{uuid.uuid4().hex}.jpg")
    kw.setdefault("sha256", uuid.uuid4().hex + uuid.uuid4().hex)
    kw.setdefault("width", 64)
    kw.setdefault("height", 48)
    kw.setdefault("status", "ok")
    image = Image(project_id=project.id, **kw)
    session.add(image)
    session.flush()
    return image


def make_model_version(session: Session, **kw: Any) -> ModelVersion:
    kw.setdefault("name", "classical-test")
    kw.setdefault("backend", "classical")
    mv = ModelVersion(**kw)
    session.add(mv)
    session.flush()
    return mv


def box_mask(height: int, width: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """HW bool mask with the XYXY box [x0, x1) x [y0, y1) set."""
    m = np.zeros((height, width), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def make_mask(session: Session, *, image: Image, mask: np.ndarray | None = None, **kw: Any) -> Mask:
    if mask is None:
        mask = box_mask(image.height or 48, image.width or 64, 4, 4, 20, 20)
    kw.setdefault("source", "model")
    kw.setdefault("status", "proposed")
    row = Mask(
        image_id=image.id, rle=encode_rle(mask), bbox=mask_bbox(mask), area=int(mask.sum()), **kw
    )
    session.add(row)
    session.flush()
    return row


def proposal_decisions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, 2) [predicted IoU, stability], y (n,) accepted 0/1): accepts rise with IoU."""
    rng = np.random.default_rng(seed)
    iou = rng.uniform(0.5, 1.0, n)
    stab = rng.uniform(0.7, 1.0, n)
    accept = rng.uniform(0, 1, n) < np.clip((iou - 0.55) * 2.2, 0, 1)
    return np.stack([iou, stab], axis=1), accept.astype(int)


def make_queue(
    factory: sessionmaker[Session], n_images: int, n_users: int
) -> tuple[int, list[int]]:
    """A committed project with ``n_images`` images and ``n_users`` annotators:
    (project id, user ids)."""
    with transaction(factory) as s:
        p = make_project(s)
        for _ in range(n_images):
            make_image(s, project=p)
        users = [make_user(s).id for _ in range(n_users)]
        return p.id, users
