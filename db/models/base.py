"""The declarative base and the column conventions every model shares: ``utcnow``, the
``UTCDateTime`` type (aware UTC on SQLite too), 64-bit ids (``BigId``), and the value sets
of roles, mask sources and statuses, and curation stages."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase

ROLES = ("annotator", "curator", "reviewer", "admin")


MASK_SOURCES = ("model", "human", "model_edited")


MASK_STATUSES = ("proposed", "accepted", "rejected", "superseded")


CURATION_STAGES = ("auto", "generalist", "specialist")


def utcnow() -> dt.datetime:
    """Timezone-aware current UTC time."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """DateTime that always returns aware UTC datetimes, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# 64-bit ids for the tables that grow with images, masks and events (0012_bigint_ids).
# SQLite's INTEGER PRIMARY KEY is already a 64-bit rowid, and only "INTEGER" (not
# "BIGINT") autoincrements there, hence the variant.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}
