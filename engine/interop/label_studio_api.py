"""A small client for Label Studio's REST API (what the importer and ``scripts/ls_roundtrip.py``
need: JSON calls with an access token, predictions by id, paged task lists).

Authentication: Label Studio's legacy API token (``Authorization: Token <token>``, the
"Access Token" of the account page, or ``LABEL_STUDIO_USER_TOKEN`` at first start). A
personal access token (a JWT refresh token) is exchanged for an access token first
(``POST /api/token/refresh``) and sent as ``Bearer``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

TIMEOUT_S = 120.0  # Label Studio's own ML-backend timeout is 100 s; its calls can wait on ours


class LabelStudioError(Exception):
    """A Label Studio API call failed; the message names the call and Label Studio's answer."""


class LabelStudio:
    """``LabelStudio(url, token)``: JSON requests against ``url`` (e.g. http://127.0.0.1:8080)."""

    def __init__(self, url: str, token: str, *, timeout: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.client = httpx.Client(base_url=self.url, timeout=timeout)
        self.client.headers["Authorization"] = self._auth(token)

    def _auth(self, token: str) -> str:
        if token.count(".") == 2:  # a personal access token (JWT): exchange it
            r = self.client.post("/api/token/refresh", json={"refresh": token})
            if r.status_code != 200:
                raise LabelStudioError(
                    f"POST /api/token/refresh: {r.status_code} {r.text[:200]} "
                    "(is the personal access token valid?)"
                )
            return f"Bearer {r.json()['access']}"
        return f"Token {token}"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """One request; the decoded JSON answer (None for an empty body). Raises
        ``LabelStudioError`` on a transport error or a status >= 400."""
        try:
            r = self.client.request(method, path, **kw)
        except httpx.HTTPError as err:
            raise LabelStudioError(f"{method} {self.url}{path}: {err}") from err
        if r.status_code >= 400:
            raise LabelStudioError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.content

    def tasks(self, project_id: int, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every task of a project, page by page (``GET /api/tasks``)."""
        page = 1
        while True:
            try:
                doc = self.call(
                    "GET",
                    "/api/tasks",
                    params={"project": project_id, "page": page, "page_size": page_size},
                )
            except LabelStudioError as err:
                if " 404 " in str(err) and page > 1:  # past the last page
                    return
                raise
            rows = doc.get("tasks", []) if isinstance(doc, dict) else doc
            yield from rows
            if len(rows) < page_size:
                return
            page += 1


def fetch_prediction(ls: LabelStudio, prediction_id: int) -> dict[str, Any]:
    """One prediction (``GET /api/predictions/<id>``) as the JSON export would have inlined it."""
    doc = ls.call("GET", f"/api/predictions/{int(prediction_id)}")
    if not isinstance(doc, dict):
        raise LabelStudioError(f"GET /api/predictions/{prediction_id}: not a JSON object")
    return doc
