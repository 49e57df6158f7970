"""The schemathesis fuzzer (``scripts/fuzz_api.py``), bounded profile, on both databases:
every operation, anonymously and as each role, valid and invalid input: no 5xx and no
response outside the OpenAPI schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.fuzz_api import ROLES_FUZZED, fuzz, world

pytestmark = pytest.mark.slow


def test_fuzz_every_operation_every_role(db_url: str, tmp_path: Path) -> None:
    with world(db_url, tmp_path) as w:
        assert {"image_id", "mask_id", "project_id", "lease_id"} <= set(w.ids)
        report = fuzz(w, examples=3)
    assert report.operations > 40
    assert set(report.cases) == set(ROLES_FUZZED)
    assert min(report.cases.values()) >= report.operations
    shown = "\n".join(f"{f.operation} [{f.role}/{f.mode}] {f.checks}: {f.request}"
                      for f in report.failures if f.request)  # fmt: skip
    assert report.failures == [], shown
