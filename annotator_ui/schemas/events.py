"""Request and response bodies of effort events: strict, finite, NUL-free, size-capped."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

ID_MAX = 2**31 - 1  # integer ids and seq fit the database's 32-bit INTEGER columns
PAYLOAD_MAX_BYTES = 16_384  # the payload as compact JSON
PAYLOAD_MAX_DEPTH = 8  # nested objects/lists; the client's payloads are at most 2 deep
EventId = Annotated[int, Field(strict=True, ge=1, le=ID_MAX)]


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain a NUL character")
    return text


NulFree = Annotated[str, Field(strict=True), AfterValidator(_no_nul)]


def _payload_problem(value: Any, depth: int = 1) -> str | None:
    """Why a payload (already an object) cannot be stored, or None. Recursion stops at
    ``PAYLOAD_MAX_DEPTH``, so any nesting is checked safely."""
    if depth > PAYLOAD_MAX_DEPTH:
        return f"is nested deeper than {PAYLOAD_MAX_DEPTH} levels"
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return "has a NUL character in a key"
        if isinstance(item, str) and "\x00" in item:
            return "has a NUL character in a string"
        if isinstance(item, float) and not math.isfinite(item):
            return "has a number that is not finite (NaN or Infinity)"
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > 2**53:
            return "has an integer beyond +-2**53 (not exact in JSON)"
        if isinstance(item, dict | list):
            problem = _payload_problem(item, depth + 1)
            if problem:
                return problem
    return None


class EventIn(BaseModel):
    """One effort event (vocabulary: ``engine.flywheel.events``). Types are strict (``seq``
    ``"3"`` is refused), numbers finite, strings free of NUL; ``payload`` is a JSON object of
    at most ``PAYLOAD_MAX_BYTES`` and ``PAYLOAD_MAX_DEPTH`` levels; the payload fields the
    effort rules read are typed: ``accept_all_confident`` ``mask_ids`` (list of ids),
    ``object_commit`` ``parent_id`` (id or null)."""

    uuid: NulFree = Field(min_length=8, max_length=36)
    session_id: NulFree = Field(min_length=1, max_length=64)
    seq: int = Field(default=0, strict=True, ge=0, le=ID_MAX)
    kind: NulFree = Field(min_length=1, max_length=32)
    client_time: float = Field(
        strict=True,
        allow_inf_nan=False,
        ge=-1e15,
        le=1e15,
        description="performance.now() milliseconds (monotonic within the session).",
    )
    visible: bool = Field(default=True, strict=True)
    image_id: EventId | None = None
    mask_id: EventId | None = None
    lease_id: EventId | None = None
    payload: dict[str, Any] = Field(default_factory=dict, strict=True)

    @field_validator("payload")
    @classmethod
    def _payload_shape(cls, payload: dict[str, Any]) -> dict[str, Any]:
        problem = _payload_problem(payload)
        if problem:
            raise ValueError(f"payload {problem}")
        size = len(json.dumps(payload, separators=(",", ":"), allow_nan=False).encode())
        if size > PAYLOAD_MAX_BYTES:
            raise ValueError(f"payload is {size} bytes of JSON; at most {PAYLOAD_MAX_BYTES}")
        return payload

    @model_validator(mode="after")
    def _known_payload_fields(self) -> EventIn:
        ids = self.payload.get("mask_ids")
        bad_ids = ids is not None and (not isinstance(ids, list) or not all(_is_id(m) for m in ids))
        if self.kind == "accept_all_confident" and bad_ids:
            raise ValueError("payload.mask_ids must be a list of mask ids")
        parent = self.payload.get("parent_id")
        if self.kind == "object_commit" and parent is not None and not _is_id(parent):
            raise ValueError("payload.parent_id must be a mask id or null")
        return self


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ID_MAX


class EventsIn(BaseModel):
    """A batch of raw objects. Each item is validated on its own as ``EventIn`` (in the
    route), so one bad item is refused with its reason and never stops the others."""

    events: list[Any] = Field(max_length=1000)


class EventRejected(BaseModel):
    index: int = Field(description="Position of the event in the posted batch.")
    uuid: str | None = Field(description="Its uuid, when it had a readable one.")
    reason: str


class EventsOut(BaseModel):
    acknowledged: list[str] = Field(
        description="Every uuid the client may forget: stored, duplicate, or refused for "
        "good (a retry would be refused again)."
    )
    stored: int
    duplicates: int
    rejected: list[EventRejected]
