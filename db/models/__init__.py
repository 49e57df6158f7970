"""SQLAlchemy 2.0 models: the data model of ``docs/architecture.md``, one module per area
(``base``, ``projects``, ``users``, ``annotations``, ``records``); import them from here.

Conventions
- Times are timezone-aware UTC (``utcnow()``); SQLite stores them naive, so
  reads go through ``UTCDateTime`` which re-attaches UTC.
- Masks are COCO RLE dicts ``{"size": [h, w], "counts": str}`` in full-resolution
  image pixels; ``bbox`` is COCO ``[x, y, w, h]`` (XYWH pixels).
- Free-form extras live in JSON columns so most features need no migration.
"""

from __future__ import annotations

# in definition order: the metadata lists the tables in the order they are defined
# isort: off
from db.models.base import (
    CURATION_STAGES,
    MASK_SOURCES,
    MASK_STATUSES,
    ROLES,
    Base,
    BigId,
    UTCDateTime,
    utcnow,
)
from db.models.projects import (
    Image,
    ModelVersion,
    Prefill,
    PrefillClaim,
    Project,
    Round,
)
from db.models.users import (
    AuthToken,
    LoginThrottle,
    User,
    name_key,
)
from db.models.annotations import (
    Caption,
    CurationDecision,
    Event,
    ImageFlag,
    Lease,
    Mask,
)
from db.models.records import (
    EffortCache,
    EffortObject,
    Export,
    WorkerHeartbeat,
)
# isort: on

__all__ = [
    "AuthToken",
    "Base",
    "BigId",
    "CURATION_STAGES",
    "Caption",
    "CurationDecision",
    "EffortCache",
    "EffortObject",
    "Event",
    "Export",
    "Image",
    "ImageFlag",
    "Lease",
    "LoginThrottle",
    "MASK_SOURCES",
    "MASK_STATUSES",
    "Mask",
    "ModelVersion",
    "Prefill",
    "PrefillClaim",
    "Project",
    "ROLES",
    "Round",
    "UTCDateTime",
    "User",
    "WorkerHeartbeat",
    "name_key",
    "utcnow",
]
