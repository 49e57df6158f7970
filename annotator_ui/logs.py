"""Logging for the app, the worker and the CLI: request ids on every line, text or JSON.

``request_id`` is a context variable set per HTTP request by
``annotator_ui.observability.RequestIdMiddleware``; ``RequestIdFilter`` copies it onto
every log record (``"-"`` outside a request). FastAPI runs sync endpoints in a thread
with a copy of the context, so their log lines carry it too.

``logging_config(settings)`` is a ``logging.config.dictConfig`` dict: ``dataengine serve``
hands it to uvicorn (applied again in each worker process), the CLI applies it at start.
JSON lines are ``{"time", "level", "logger", "message", "request_id"}`` plus ``exc_info``
(the formatted traceback, logs only: never an HTTP response) when there is one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from contextvars import ContextVar
from typing import Any

from engine.settings import Settings

request_id: ContextVar[str] = ContextVar("dataengine_request_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (the current request's id, or ``-``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; times are ISO 8601 UTC."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id.get()),
        }
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def logging_config(settings: Settings, *, level: str | None = None) -> dict[str, Any]:
    """A ``dictConfig`` for the root logger (and uvicorn's, which propagate to it).

    ``level`` overrides ``settings.log_level`` (the CLI logs warnings only).
    """
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if settings.log_format == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level or settings.log_level, "handlers": ["default"]},
        "loggers": {
            **{
                name: {"level": level or settings.log_level, "handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            "alembic": {"level": "WARNING"},  # its INFO lines repeat on every schema check
        },
    }


def configure_logging(settings: Settings, *, level: str | None = None) -> None:
    """Apply ``logging_config`` in this process."""
    import logging.config

    logging.config.dictConfig(logging_config(settings, level=level))
