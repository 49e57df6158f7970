"""Log configuration: text lines with the request id, JSON lines (one object each), in a
fresh process as `dataengine serve` / the CLI configure it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import logging
from annotator_ui.logs import configure_logging, request_id
from engine.settings import Settings

configure_logging(Settings(_env_file=None, log_format={fmt!r}, log_level="INFO"))
log = logging.getLogger("dataengine.test")
log.info("outside a request")
request_id.set("rid-42")
log.warning("inside %s", "a request")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("failed")
logging.getLogger("uvicorn.access").info("GET /livez 200")
"""


def run(fmt: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(fmt=fmt)], capture_output=True, text=True, check=True
    )
    return [line for line in out.stderr.splitlines() if line.strip()]


def test_json_lines() -> None:
    lines = run("json")
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert [r["message"] for r in records] == [
        "outside a request",
        "inside a request",
        "failed",
        "GET /livez 200",
    ]
    assert [r["request_id"] for r in records] == ["-", "rid-42", "rid-42", "rid-42"]
    assert records[1]["level"] == "WARNING" and records[1]["logger"] == "dataengine.test"
    assert records[0]["time"].endswith("+00:00")
    assert "ZeroDivisionError" in records[2]["exc_info"]
    assert all(line.startswith("{") for line in lines)  # tracebacks stay inside the object


def test_text_lines_carry_the_request_id() -> None:
    lines = run("text")
    assert lines[0].endswith("INFO dataengine.test [-] outside a request")
    assert lines[1].endswith("WARNING dataengine.test [rid-42] inside a request")
    assert any(line.endswith("[rid-42] GET /livez 200") for line in lines)


def test_bad_log_format_is_refused() -> None:
    from pydantic import ValidationError

    from engine.settings import Settings

    with pytest.raises(ValidationError, match="log_format"):
        Settings(_env_file=None, log_format="xml")  # type: ignore[arg-type,call-arg]
