"""The one error body of the API, its OpenAPI declaration and the handlers that send it.

Every error response is ``ErrorOut``: ``{"detail": "<message fit to show a user>"}``, or
for 422 validation errors ``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}``.
``ERROR_RESPONSES`` declares it on every router (401/403/404/409/413/422/429) so the
OpenAPI schema says what the app sends; ``install_error_handlers`` makes the app send it
(domain errors, HTTPExceptions, validation errors, out-of-range database values, and a
traceback-free 500 for anything unexpected).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException

from db.errors import DomainError

log = logging.getLogger("dataengine.app")


class FieldError(BaseModel):
    """One problem in a request: where (``loc``: body/query/path then keys), what, its kind."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error body. ``detail`` is a message, or the list of field problems (422)."""

    detail: str | list[FieldError] = Field(
        description="What went wrong and how to fix it; a list of field errors for 422."
    )


_WHAT = {
    401: "Not logged in (send the session cookie or an Authorization: Bearer token).",
    403: "Logged in, but your role may not do this, or the item is not yours.",
    404: "No such item (or an id out of range).",
    409: "Conflict with the current state (taken name, changed version, lost lease).",
    413: "Request body (or draft) larger than the server accepts.",
    422: "Invalid input: field errors, NUL characters, NaN/Infinity, too deep JSON.",
    429: "Too many attempts; wait the Retry-After seconds.",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text} for code, text in _WHAT.items()
}


def error_schema_as_json(app: FastAPI) -> None:
    """Make ``app.openapi()`` declare every error as ``application/json`` ``ErrorOut``, also
    on routes whose success response is HTML or an image (FastAPI would reuse that type)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        ref = {"schema": {"$ref": "#/components/schemas/ErrorOut"}}
        for ops in spec.get("paths", {}).values():
            for op in ops.values():
                for code, resp in op.get("responses", {}).items():
                    if code.isdigit() and int(code) in _WHAT:
                        resp["content"] = {"application/json": ref}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def error_response(
    status: int, detail: str | list[dict[str, Any]], headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSONResponse with the ``ErrorOut`` shape."""
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)


def field_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """pydantic / FastAPI error dicts reduced to ``FieldError`` (the input is never echoed)."""
    return [
        {
            "loc": [x if isinstance(x, int) else str(x) for x in e.get("loc", [])],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


def _out_of_range(err: BaseException) -> bool:
    """A value the database column cannot hold (an id above 2**31-1 on PostgreSQL, ...)."""
    orig = getattr(err, "orig", None) or err.__cause__ or err
    name = type(orig).__name__
    return isinstance(orig, OverflowError) or name == "NumericValueOutOfRange"


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into an ``ErrorOut`` body."""
    error_schema_as_json(app)

    @app.exception_handler(DomainError)
    async def domain_error(_request: Request, err: DomainError) -> JSONResponse:
        return error_response(err.status_code, str(err))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        detail = err.detail if isinstance(err.detail, str) else str(err.detail)
        if err.status_code == 400:  # FastAPI's "error parsing the body": malformed input
            return error_response(
                422, f"{detail}: send a JSON body (Content-Type: application/json)"
            )
        return error_response(err.status_code, detail, dict(err.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(422, field_errors(list(err.errors())))

    @app.exception_handler(DataError)
    async def data_error(_request: Request, err: DataError) -> JSONResponse:
        if _out_of_range(err):
            return error_response(404, "not found: a number (id) is out of range")
        log.warning("value refused by the database: %s", err.orig)
        return error_response(422, "a value does not fit its database column; shorten it")

    @app.exception_handler(StatementError)
    async def statement_error(request: Request, err: StatementError) -> JSONResponse:
        if _out_of_range(err):
            return error_response(404, "not found: a number (id) is out of range")
        return await unexpected(request, err)

    @app.exception_handler(OverflowError)
    async def overflow(_request: Request, err: OverflowError) -> JSONResponse:
        return error_response(422, f"a number is out of range: {err}")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=err)
        return error_response(500, "internal server error")
