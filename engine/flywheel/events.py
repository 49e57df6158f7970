"""The event vocabulary shared by the browser client, the simulator and the metrics.

Every event: ``uuid`` (client-made), ``session_id`` (one page load / simulated session),
``seq`` (order within the session), ``client_time`` (ms, monotonic within the session),
``visible`` (page visibility), ``kind`` (below), ``image_id``, optional ``mask_id`` and a
``payload`` dict. Timing rules (``docs/effort.md``) are applied in ``engine.flywheel.effort``.
"""

from __future__ import annotations

# session / page
SESSION_START = "session_start"  # payload: {"arm": "prefill"|"control", "lease_id": int}
IMAGE_OPEN = "image_open"  # the image is shown; starts the image's clock
VISIBILITY = "visibility"  # payload: {"visible": bool}; hidden time never counts
HEARTBEAT = "heartbeat"  # keeps a lease alive; also a timing tick

# reviewing pre-filled masks (mask_id = the proposal)
MASK_SELECT = "mask_select"
MASK_ACCEPT = "mask_accept"
MASK_REJECT = "mask_reject"
ACCEPT_ALL_CONFIDENT = "accept_all_confident"  # payload: {"mask_ids": [...]}
FIX_START = "fix_start"  # start refining a proposal; payload: {"mask_id": int}
# the annotator revealed the image's less confident proposals (hidden by the confident rule);
# from then on every proposal of the image counts as shown. payload: {"mask_ids": [...]}
REVEAL_LESS_CONFIDENT = "reveal_less_confident"

# adding / fixing objects
PROMPT_CLICK = (
    "prompt_click"  # payload: {"x": float, "y": float, "positive": bool, "target": "new"|"fix"}
)
PROMPT_BOX = "prompt_box"  # payload: {"box": [x0, y0, x1, y1]}
BRUSH = "brush"  # payload: {"mode": "paint"|"erase", "radius": float}
OBJECT_COMMIT = "object_commit"  # mask_id = the new mask; payload: {"parent_id": int|None, "label": str, "clicks": int}
OBJECT_CANCEL = "object_cancel"
LABEL_SET = "label_set"  # payload: {"label": str}
UNDO = "undo"
REDO = "redo"
SUBMIT = "submit"  # the image is done; stops the image's clock

# recovering and moving on (docs/effort.md: activity like any other action)
MASK_RESTORE = "mask_restore"  # a rejected mask brought back from the list; payload: {"status": "proposed"|"accepted"}
PROMPT_UNDO = (
    "prompt_undo"  # Ctrl+Z while drawing: the last click/box removed; payload: {"left": int}
)
IMAGE_SKIP = "image_skip"  # the image was skipped (to the back of the user's queue)
IMAGE_FLAG = "image_flag"  # flagged for a reviewer; payload: {"reason": str}

REVIEW_DECISIONS = (MASK_ACCEPT, MASK_REJECT)
PROMPTS = (PROMPT_CLICK, PROMPT_BOX, BRUSH)
ALL_KINDS = (
    SESSION_START,
    IMAGE_OPEN,
    VISIBILITY,
    HEARTBEAT,
    MASK_SELECT,
    MASK_ACCEPT,
    MASK_REJECT,
    ACCEPT_ALL_CONFIDENT,
    FIX_START,
    REVEAL_LESS_CONFIDENT,
    PROMPT_CLICK,
    PROMPT_BOX,
    BRUSH,
    OBJECT_COMMIT,
    OBJECT_CANCEL,
    LABEL_SET,
    UNDO,
    REDO,
    SUBMIT,
    MASK_RESTORE,
    PROMPT_UNDO,
    IMAGE_SKIP,
    IMAGE_FLAG,
)
# what curators may send (their pages time no masks): page-level kinds only, and on an
# image only under their own curation lease (``annotator_ui.routes.events``)
CURATION_KINDS = (SESSION_START, VISIBILITY, HEARTBEAT)

# server-written, never sent by clients (so not in ALL_KINDS)
IMPORT_LEAD_TIME = "import_lead_time"  # effort measured elsewhere (Label Studio lead_time); payload: {"seconds": float|None, "task_id", "annotation_id", "completed_by", "updated_at", "mask_ids": [...]}
