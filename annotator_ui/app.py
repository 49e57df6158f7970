"""The FastAPI app factory. The database is checked and the model loaded once, in the lifespan."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from annotator_ui import observability
from annotator_ui.settings import Settings, check_binding
from db.errors import DomainError
from db.migrate import check_up_to_date
from db.session import make_engine, make_session_factory

log = logging.getLogger("dataengine.app")
STATIC = Path(__file__).parent / "static"

# Router modules under annotator_ui.routes, in the order they are mounted.
ROUTERS = [
    "health",
    "auth",
    "admin",
    "tasks",
    "masks",
    "events",
    "metrics",
    "curation",
    "ml_backend",
]


def load_segmenter(settings: Settings) -> Any:
    """Build the configured segmenter (classical unless a SAM checkpoint is configured)."""
    from engine.segment.registry import build_segmenter

    return build_segmenter(
        settings.backend,
        model_type=settings.sam_model,
        checkpoint=settings.sam_checkpoint,
        sha256=settings.sam_checkpoint_sha256,
        device=settings.device,
        cache_dir=settings.cache_dir,
        cache_items=settings.embedding_cache_items,
    )


def create_app(settings: Settings | None = None, *, segmenter: Any = None) -> FastAPI:
    """Build the app. ``segmenter`` overrides the configured one (tests, embedding in scripts)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_binding(settings, settings.host)  # no anonymous /ml on a reachable address
        engine = make_engine(settings.resolved_database_url)
        check_up_to_date(engine)  # refuses to start on a database that is behind
        app.state.engine = engine
        app.state.session_factory = make_session_factory(engine)
        app.state.segmenter = segmenter if segmenter is not None else load_segmenter(settings)
        extras = []
        for hook in getattr(app.state, "startup_hooks", []):
            extras.append(hook(app))
        try:
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
        description="Annotation, effort accounting, flywheel metrics and curation.",
    )
    app.state.settings = settings
    app.state.startup_hooks = []

    @app.exception_handler(DomainError)
    async def domain_error(_request: Request, err: DomainError) -> JSONResponse:
        return JSONResponse(status_code=err.status_code, content={"detail": str(err)})

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, err: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in err.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=err)
        return JSONResponse(status_code=500, content={"detail": "internal server error"})

    for name in ROUTERS:
        module = importlib.import_module(f"annotator_ui.routes.{name}")
        app.include_router(module.router)
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(app)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    observability.install(app)  # X-Request-ID, request metrics (routes: routes/health.py)

    @app.get("/", include_in_schema=False)
    def index() -> Any:
        page = STATIC / "index.html"
        return FileResponse(page) if page.exists() else RedirectResponse("/docs")

    return app
