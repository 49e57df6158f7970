"""The FastAPI app factory. The database is checked and the model loaded once, in the lifespan."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from annotator_ui import idle_work, observability
from annotator_ui.errors import ERROR_RESPONSES, install_error_handlers
from annotator_ui.login_guard import LoginGuard
from annotator_ui.request_guard import RequestGuard
from db.migrate import check_up_to_date
from db.session import make_engine, make_session_factory
from engine.settings import Settings, check_binding

log = logging.getLogger("dataengine.app")
STATIC = Path(__file__).parent / "static"
# Swagger UI and ReDoc bundles shipped by the fastapi-offline package (no CDN).
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"

# Router modules under annotator_ui.routes, in the order they are mounted.
ROUTERS = [
    "health",
    "auth",
    "admin",
    "tasks",
    "images",
    "navigation",
    "flags",
    "masks",
    "decode",
    "events",
    "metrics",
    "curation",
    "ml_backend",
    "workers",
]


def load_segmenter(settings: Settings) -> Any:
    """Build the configured segmenter (classical unless a SAM checkpoint is configured)."""
    from engine.segment.registry import segmenter_from_settings

    return segmenter_from_settings(settings)


def create_app(settings: Settings | None = None, *, segmenter: Any = None) -> FastAPI:
    """Build the app. ``segmenter`` overrides the configured one (tests, embedding in scripts)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_binding(settings, settings.host)  # no anonymous /ml on a reachable address
        engine = make_engine(settings.resolved_database_url)
        extras = []
        try:  # a failed start (database behind, model missing) closes the pool too
            check_up_to_date(engine)  # refuses to start on a database that is behind
            app.state.engine = engine
            app.state.session_factory = make_session_factory(engine)
            app.state.segmenter = segmenter if segmenter is not None else load_segmenter(settings)
            for hook in getattr(app.state, "startup_hooks", []):
                extras.append(hook(app))
            yield
        finally:
            for stop in extras:
                if callable(stop):
                    stop()
            engine.dispose()

    app = FastAPI(
        title="Data Engine",
        version="0.1.0",
        lifespan=lifespan,
        description="Annotation, effort accounting, flywheel metrics and curation. "
        'Every error body is ErrorOut: {"detail": message} (422: a list of field errors).',
        docs_url=None,  # served below from the app's own origin, without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    guard = LoginGuard(
        max_concurrent=settings.max_concurrent_password_checks,
        max_waiting=settings.max_waiting_password_checks,
        nice=settings.password_check_nice,
    )
    app.state.login_guard = guard
    app.state.startup_hooks = [lambda _app: guard.close]  # close() runs at shutdown
    install_error_handlers(app)
    app.add_middleware(
        RequestGuard, max_bytes=settings.max_request_bytes, max_depth=settings.max_json_depth
    )
    idle_work.attach(app)  # app.state.idle_work: embeddings, metrics rows when no request runs

    for name in ROUTERS:
        module = importlib.import_module(f"annotator_ui.routes.{name}")
        app.include_router(module.router, responses=ERROR_RESPONSES)
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(app)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    observability.install(app)  # X-Request-ID, request metrics (routes: routes/health.py)
    app.mount("/apidocs-assets", StaticFiles(directory=DOCS_ASSETS), name="apidocs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> FileResponse:
        """Swagger UI from the app's own origin (works offline; the page has no inline script)."""
        return FileResponse(STATIC / "apidocs" / "swagger.html")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> FileResponse:
        return FileResponse(STATIC / "apidocs" / "redoc.html")

    @app.get("/", include_in_schema=False)
    def index() -> Any:
        page = STATIC / "index.html"
        return FileResponse(page) if page.exists() else RedirectResponse("/docs")

    return app
