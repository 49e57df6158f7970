"""ASGI middleware in front of every route: request limits, hostile-input checks, headers.

- Body larger than ``max_bytes`` -> 413, decided from Content-Length when sent and
  otherwise while the body streams in (reading stops at the limit).
- NUL characters in the path or query string -> 422.
- JSON bodies (``application/json`` or ``+json``): NaN / Infinity / numbers that overflow
  to infinity, NUL characters in any string or key, and nesting deeper than ``max_depth``
  -> 422, before any route sees them. Malformed JSON is left to FastAPI (422 too).
  Batch routes that validate each item on their own (``PER_ITEM_PATHS``: ``/api/events``,
  where one bad event must never stop the batch) get the size limit only; they refuse a
  bad item with its reason and store the rest.
- Security headers on every response: a Content-Security-Policy without third-party
  origins (``frame-ancestors 'none'``), X-Content-Type-Options, Referrer-Policy,
  X-Frame-Options, Cross-Origin-Opener-Policy.

Error bodies are ``annotator_ui.errors.ErrorOut``.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotator_ui.errors import error_response

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # ReDoc and the dashboard inject <style>
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


PER_ITEM_PATHS = frozenset({"/api/events"})


class BadJSON(ValueError):
    """A JSON body the API refuses (message fit to show a user)."""


def _no_constants(name: str) -> Any:
    raise BadJSON(f"JSON numbers must be finite; {name} is not accepted")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJSON(f"JSON number {text[:40]} is out of range (not finite)")
    return value


def check_json(body: bytes, *, max_depth: int) -> None:
    """BadJSON when ``body`` holds NaN/Infinity, NUL characters or nests deeper than
    ``max_depth``; returns quietly for valid JSON and for anything that is not JSON."""
    try:
        value = json.loads(body, parse_constant=_no_constants, parse_float=_finite_float)
    except BadJSON:
        raise
    except RecursionError as err:
        raise BadJSON(f"JSON nests deeper than {max_depth} levels") from err
    except ValueError as err:  # malformed JSON (FastAPI reports it), or a huge integer
        if "integer string conversion" in str(err) or "digits" in str(err):
            raise BadJSON("JSON integer has too many digits") from err
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise BadJSON("JSON strings must not contain NUL (\\u0000) characters")
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise BadJSON(f"JSON nests deeper than {max_depth} levels")
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def _is_json(headers: dict[bytes, bytes]) -> bool:
    ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return ctype == b"application/json" or ctype.endswith(b"+json")


class RequestGuard:
    """The middleware (see the module docstring). Wraps the whole app."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        problem = await self._check_target(scope)
        if problem is not None:
            await error_response(422, problem)(scope, receive, send_with_headers)
            return
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(scope, receive, send_with_headers)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE") and length is None:
            await self.app(scope, receive, send_with_headers)
            return
        body, more = await self._read(receive)
        if more:
            await self._too_large(scope, receive, send_with_headers)
            return
        if body and _is_json(headers) and scope.get("path") not in PER_ITEM_PATHS:
            try:
                check_json(body, max_depth=self.max_depth)
            except BadJSON as err:
                await error_response(422, str(err))(scope, receive, send_with_headers)
                return
        await self.app(scope, _replay(body, receive), send_with_headers)

    async def _check_target(self, scope: Scope) -> str | None:
        if "\x00" in scope.get("path", ""):
            return "the URL path must not contain NUL (%00) characters"
        query = scope.get("query_string", b"")
        if b"\x00" in query or (b"%00" in query.lower() and b"\x00" in unquote_to_bytes(query)):
            return "query parameters must not contain NUL (%00) characters"
        return None

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        """The body, and True when it passed ``max_bytes`` (reading stopped there)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            f"request body larger than {self.max_bytes} bytes; send less "
            "(the limit is the max_request_bytes setting)",
            {"Connection": "close"},
        )
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body over once, then defers to the client."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
