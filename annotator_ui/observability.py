"""Request ids, request metrics and what ``/metrics`` and ``/readyz`` report.

``install(app)`` (called once by ``create_app``) adds ``RequestIdMiddleware`` and makes
the app's 500 handler carry the request id too. The routes themselves live in
``annotator_ui.routes.health``.

Request ids: an incoming ``X-Request-ID`` of 1-128 characters from ``[A-Za-z0-9._:-]``
is kept, anything else is replaced by a fresh uuid4 hex; the id is sent back on every
response and set in ``annotator_ui.logs.request_id`` for the log lines of the request.

``/metrics`` (Prometheus text format) = this process's metrics (``engine.telemetry``:
request latency by route template, decode latency, images pre-filled, events stored)
+ what lives in the database, read at scrape time and cached ``DB_CACHE_SECONDS``:

- ``dataengine_prefill_queue_depth{project_id}``: ok images with no pre-fill row yet
  (by any model version) — the pre-fill backlog.
- ``dataengine_worker_last_seen_timestamp_seconds{worker, hostname, backend}``: last
  heartbeat (Unix time) of each ``dataengine worker`` seen in the last ``WORKER_WINDOW``.
- ``dataengine_worker_images_prefilled_total{worker, outcome}``: that worker run's totals.
- ``dataengine_database_up``: 1 when the last read worked, else 0.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``dataengine serve --workers N`` sets it), the
process metrics are summed over all app processes by ``prometheus_client``'s
``MultiProcessCollector``; without it each process reports its own.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, exists, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import MutableHeaders
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotator_ui.logs import request_id
from db.errors import DatabaseBehind
from db.migrate import check_up_to_date
from db.models import Image, Prefill, utcnow
from db.session import make_session_factory
from db.workers import list_heartbeats
from engine.telemetry import DECODE_SECONDS, REQUEST_SECONDS

log = logging.getLogger("dataengine.observability")

HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DECODE_ROUTE = "/api/images/{image_id}/decode"
DB_CACHE_SECONDS = 10.0
WORKER_WINDOW = dt.timedelta(days=1)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def incoming_or_new_id(value: str | None) -> str:
    """The client's request id when it is sane, else a new uuid4 hex."""
    if value and _SANE_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def route_template(app: Any, scope: Scope) -> str:
    """The matched route's path template (``/api/images/{image_id}``), ``unmatched`` if none."""
    route = scope.get("route")  # set by FastAPI's APIRoute
    if route is not None:
        return str(getattr(route, "path_format", getattr(route, "path", "unmatched")))
    for candidate in getattr(app, "routes", ()):
        if isinstance(candidate, Mount) and candidate.matches(scope)[0] == Match.FULL:
            return f"{candidate.path}/{{path}}"
    return "unmatched"


class RequestIdMiddleware:
    """Pure ASGI: request id in, on the response and the log context; latency histogram."""

    def __init__(self, app: ASGIApp, *, root: Any = None):
        self.app = app
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"x-request-id")
        rid = incoming_or_new_id(raw.decode("latin-1") if raw else None)
        token = request_id.set(rid)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = route_template(self.root, scope)
            method = scope.get("method", "GET")
            REQUEST_SECONDS.labels(method=method, route=route, status=str(status)).observe(seconds)
            if route == DECODE_ROUTE and method == "POST" and status == 200:
                DECODE_SECONDS.observe(seconds)
        # on an exception the id stays set: the app's 500 handler (outside) logs and sends it
        request_id.reset(token)


def install(app: FastAPI) -> None:
    """Add the request-id middleware and the id on 500 responses. Call once, in create_app."""
    app.add_middleware(RequestIdMiddleware, root=app)
    app.state.db_metrics = DatabaseMetrics(app)
    unexpected = app.exception_handlers.get(Exception)
    if unexpected is not None:

        async def with_request_id(request: Request, err: Exception) -> Any:
            response = await unexpected(request, err)
            response.headers[HEADER] = request_id.get()
            return response

        app.exception_handlers[Exception] = with_request_id


# --- readiness ---------------------------------------------------------------------------


def readiness(app: Any) -> tuple[bool, str]:
    """(ready, reason): model loaded, database reachable and at the code's schema revision."""
    if getattr(app.state, "segmenter", None) is None:
        return False, "no segmentation model is loaded"
    engine: Engine | None = getattr(app.state, "engine", None)
    if engine is None:
        return False, "the app has not started (lifespan not run)"
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        check_up_to_date(engine)
    except DatabaseBehind as err:
        return False, str(err)
    except SQLAlchemyError as err:
        first = str(getattr(err, "orig", err) or type(err).__name__).strip().splitlines()
        return False, f"database unreachable: {first[0] if first else type(err).__name__}"
    return True, "ok"


def ready_response(app: Any) -> JSONResponse:
    ok, reason = readiness(app)
    return JSONResponse(
        status_code=200 if ok else 503,
        content={"status": "ready" if ok else "not ready", "reason": reason},
    )


# --- /metrics ----------------------------------------------------------------------------


class DatabaseMetrics(Collector):
    """Gauges read from the database at scrape time (cached ``DB_CACHE_SECONDS``)."""

    def __init__(self, app: Any):
        self.app = app
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._lock = threading.Lock()
        self._at = -1e9
        self._families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._at > DB_CACHE_SECONDS:
                self._families = self._read()
                self._at = time.monotonic()
            families = list(self._families)
        yield from families

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("dataengine_database_up", "1 when the database read worked.")
        engine: Engine | None = getattr(self.app.state, "engine", None)
        if engine is None:
            up.add_metric([], 0)
            return [up]
        queue = GaugeMetricFamily(
            "dataengine_prefill_queue_depth",
            "Ok images without a pre-fill row yet (any model version).",
            labels=["project_id"],
        )
        seen = GaugeMetricFamily(
            "dataengine_worker_last_seen_timestamp_seconds",
            "Last heartbeat (Unix time) of each pre-fill worker run seen in the last day.",
            labels=["worker", "hostname", "backend"],
        )
        images = CounterMetricFamily(
            "dataengine_worker_images_prefilled",
            "Images pre-filled by each worker run, by outcome.",
            labels=["worker", "outcome"],
        )
        try:
            with make_session_factory(engine)() as s:
                pending = ~exists().where(Prefill.image_id == Image.id)
                rows = s.execute(
                    select(Image.project_id, func.count())
                    .where(Image.status == "ok", pending)
                    .group_by(Image.project_id)
                ).all()
                workers = list_heartbeats(s, seen_since=utcnow() - WORKER_WINDOW)
        except SQLAlchemyError as err:
            log.warning("metrics: database read failed: %s", str(err).splitlines()[0])
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        for project_id, n in rows:
            queue.add_metric([str(project_id)], n)
        for w in workers:
            seen.add_metric([w.worker_id, w.hostname, w.backend], w.last_seen_at.timestamp())
            images.add_metric([w.worker_id, "done"], w.images_done)
            images.add_metric([w.worker_id, "failed"], w.images_failed)
        return [up, queue, seen, images]


def metrics_response(app: Any) -> Response:
    """Prometheus text: this process's (or all processes') metrics + the database gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        process: CollectorRegistry = CollectorRegistry()
        multiprocess.MultiProcessCollector(process)
    else:
        process = REGISTRY
    body = generate_latest(process)
    db_metrics: DatabaseMetrics | None = getattr(app.state, "db_metrics", None)
    if db_metrics is not None:
        body += generate_latest(db_metrics.registry)
    return Response(content=body, media_type=CONTENT_TYPE)
