"""Request and response bodies of the annotator API (pydantic), one module per resource.

Coordinate frames: points are ``[x, y]`` pixels of the full-resolution image (EXIF
orientation applied), boxes XYXY pixels, masks COCO RLE ``{"size": [h, w], "counts": str}``,
bboxes COCO XYWH pixels. Times are ISO 8601 UTC.

The routes import the bodies from here: ``from annotator_ui.schemas import TaskOut``.
"""

from __future__ import annotations

from annotator_ui.schemas.events import EventIn, EventRejected, EventsIn, EventsOut
from annotator_ui.schemas.flags import FlagIn, FlagOut, ResolveIn
from annotator_ui.schemas.masks import (
    AcceptIn,
    BulkStatusIn,
    DecodeIn,
    DecodeOut,
    FixIn,
    LeaseIn,
    MaskOut,
    MasksOut,
    NewMaskIn,
    RelabelIn,
    RevertIn,
)
from annotator_ui.schemas.projects import (
    Id,
    ImageOut,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    UserIn,
    UserOut,
    UserPatch,
)
from annotator_ui.schemas.tasks import HeartbeatIn, NextIn, SubmitIn, SubmitOut, TaskOut

__all__ = [
    "AcceptIn",
    "BulkStatusIn",
    "DecodeIn",
    "DecodeOut",
    "EventIn",
    "EventRejected",
    "EventsIn",
    "EventsOut",
    "FixIn",
    "FlagIn",
    "FlagOut",
    "HeartbeatIn",
    "Id",
    "ImageOut",
    "LeaseIn",
    "MaskOut",
    "MasksOut",
    "NewMaskIn",
    "NextIn",
    "ProjectIn",
    "ProjectOut",
    "ProjectPatch",
    "RelabelIn",
    "RevertIn",
    "ResolveIn",
    "SubmitIn",
    "SubmitOut",
    "TaskOut",
    "UserIn",
    "UserOut",
    "UserPatch",
]
