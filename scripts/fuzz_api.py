"""Property-based fuzzing of the whole HTTP API with schemathesis, as every kind of caller.

Every operation in the app's OpenAPI schema is called with generated requests (valid ones
and, with ``--modes positive,negative``, invalid ones), anonymously and as each role with a
valid bearer token. The annotator holds a lease on a real image, the curator a curation
page, and the ids in paths are half the time ids of real rows (so routes get past their 404)
and half generated. Every response is checked by schemathesis' checks:

- ``not_a_server_error``: no 5xx, ever;
- ``status_code_conformance``: the status is declared in the schema for that operation;
- ``content_type_conformance`` and ``response_schema_conformance``: the body is what the
  schema says.

The app runs under uvicorn on a loopback port in this process, over a real database: a SQLite
file, or a fresh PostgreSQL database created on the server at ``--postgres-url`` and dropped
afterwards. Tokens revoked by the fuzzer (logout, a password change) are re-issued.

    .venv/bin/python scripts/fuzz_api.py --db sqlite --examples 40
    .venv/bin/python scripts/fuzz_api.py --db postgres --examples 40 --json fuzz.json

Prints one line per operation with failures, then cases and failures per role, and exits
non-zero when anything failed. ``tests/scripts/test_fuzz_api.py`` runs a bounded profile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

ROLES_FUZZED = ("anonymous", "annotator", "curator", "reviewer", "admin")
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
PASSWORD = "fuzzing-horse-battery-staple"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class Failure:
    """One failing case: where, as whom, which checks, and how to reproduce it."""

    operation: str
    role: str
    mode: str
    status: int
    checks: list[str]
    request: str


@dataclass
class FuzzReport:
    """Counts per role and the failures (at most ``keep`` kept per operation and check)."""

    cases: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    operations: int = 0

    @property
    def n_cases(self) -> int:
        return sum(self.cases.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "operations": self.operations,
            "cases": dict(self.cases),
            "n_cases": self.n_cases,
            "n_failures": len(self.failures),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": [f.__dict__ for f in self.failures],
        }


@dataclass
class World:
    """The app under test and the rows the fuzzer aims its ids at."""

    app: Any
    base_url: str
    factory: Any
    user_ids: dict[str, int]
    ids: dict[str, int]


def _photos(folder: Path, n: int = 2) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        arr[20:60, 30:90] = (200, 40 * i, 40)
        path = folder / f"photo{i}.png"
        PILImage.fromarray(arr).save(path)
        paths.append(path)
    return paths


def _token(factory: Any, user_id: int) -> str:
    from db.models import User
    from db.session import transaction
    from db.users import issue_token

    with transaction(factory) as s:
        return issue_token(s, user=s.get(User, user_id), kind="api", hours=1)


@contextmanager
def world(db_url: str, data_dir: Path) -> Iterator[World]:
    """A migrated database with one user per role, two ingested photos with a proposal each,
    an annotator lease and a curation lease, and the app (lifespan running) on top."""
    import httpx

    from annotator_ui.app import create_app
    from db.migrate import upgrade
    from db.models import ROLES, Image, Mask
    from db.session import make_engine, make_session_factory, transaction
    from db.users import create_user
    from engine.ingest import ingest
    from engine.masks import encode_rle, mask_bbox
    from engine.segment.registry import build_segmenter, with_cache
    from engine.settings import Settings

    upgrade(db_url)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    user_ids = {}
    with transaction(factory) as s:
        for role in ROLES:
            user_ids[role] = create_user(s, name=f"fuzz-{role}", role=role, password=PASSWORD).id
    photos = data_dir / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    ingest(factory, project="fuzz", paths=_photos(photos))
    ids: dict[str, int] = {"user_id": user_ids["annotator"]}
    with transaction(factory) as s:
        images = s.query(Image).order_by(Image.id).all()
        ids["project_id"] = images[0].project_id
        ids["image_id"] = images[0].id
        for image in images:
            m = np.zeros((image.height, image.width), dtype=bool)
            m[20:60, 30:90] = True
            row = Mask(image_id=image.id, rle=encode_rle(m), bbox=mask_bbox(m), area=int(m.sum()),
                       source="model", status="proposed", predicted_iou=0.95, stability=0.97)  # fmt: skip
            s.add(row)
            s.flush()
            ids.setdefault("mask_id", row.id)
    settings = Settings(database_url=db_url, data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings, segmenter=with_cache(build_segmenter("classical"), None, 8))
    try:
        with serve(app) as base_url:
            tok = _token(factory, user_ids["annotator"])
            lease = httpx.post(
                f"{base_url}/api/tasks/next",
                json={"project_id": ids["project_id"]},
                headers={"Authorization": f"Bearer {tok}"},
            )
            if lease.status_code == 200 and lease.json():
                ids["lease_id"] = int(lease.json()["lease_id"])
            yield World(app=app, base_url=base_url, factory=factory, user_ids=user_ids, ids=ids)
    finally:
        engine.dispose()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a free loopback port; yields the base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-fuzz", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start (see the log above)")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


def _known_path_params(operation: Any, ids: dict[str, int]) -> dict[str, Any]:
    names = [p.name for p in operation.path_parameters]
    return {n: ids[n] for n in names if n in ids}


def fuzz(
    w: World,
    *,
    examples: int,
    modes: tuple[str, ...] = ("positive", "negative"),
    roles: tuple[str, ...] = ROLES_FUZZED,
    keep: int = 3,
    progress: bool = False,
) -> FuzzReport:
    """Run ``examples`` generated cases per (operation, role, mode); returns the counts."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import CHECKS

    schema = schemathesis.openapi.from_url(f"{w.base_url}/openapi.json")
    checks = CHECKS.get_by_names(list(CHECK_NAMES))
    report = FuzzReport()
    tokens = {r: _token(w.factory, w.user_ids[r]) for r in roles if r != "anonymous"}
    kept: Counter[tuple[str, str]] = Counter()
    operations = [r.ok() for r in schema.get_all_operations()]
    report.operations = len(operations)
    bar = _bar(len(operations) * len(roles) * len(modes), progress)
    for op in operations:
        label = f"{op.method.upper()} {op.path}"
        known = _known_path_params(op, w.ids)
        for role in roles:
            for mode in modes:
                gen_mode = (
                    GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
                )
                strategies = [op.as_strategy(generation_mode=gen_mode)]
                if known and mode == "positive":
                    strategies.append(
                        op.as_strategy(generation_mode=gen_mode, path_parameters=known)
                    )

                for strategy in strategies:
                    _run_cases(strategy, examples, lambda case, r=role, m=mode, lb=label: _one(
                        case, w=w, role=r, mode=m, label=lb, tokens=tokens, checks=checks,
                        report=report, kept=kept, keep=keep))  # fmt: skip
                bar.update(1)
    bar.close()
    return report


def _run_cases(strategy: Any, examples: int, body: Any) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=strategy)
    def run(case: Any) -> None:
        body(case)

    with contextlib.suppress(Unsatisfiable):  # negative mode, no inputs: nothing invalid to send
        run()


def _one(case: Any, *, w: World, role: str, mode: str, label: str, tokens: dict[str, str],
         checks: list[Any], report: FuzzReport, kept: Counter[tuple[str, str]], keep: int) -> None:  # fmt: skip
    from schemathesis.core.failures import Failure as Failure_
    from schemathesis.core.failures import FailureGroup

    headers = {}
    if role != "anonymous":
        headers["Authorization"] = f"Bearer {tokens[role]}"
    response = case.call(headers=headers, timeout=60)
    if response.status_code == 401 and role != "anonymous":
        tokens[role] = _token(w.factory, w.user_ids[role])
    report.cases[role] += 1
    report.statuses[response.status_code] += 1
    try:
        case.validate_response(response, checks=checks, headers=headers)
    except (FailureGroup, Failure_) as err:
        names = sorted({type(f).__name__ for f in getattr(err, "exceptions", [err])})
        key = (label, ",".join(names))
        kept[key] += 1
        request = _describe(case, response) if kept[key] <= keep else ""
        report.failures.append(Failure(label, role, mode, response.status_code, names, request))


def _describe(case: Any, response: Any) -> str:
    body = getattr(case, "body", None)
    text = json.dumps(body, default=str)[:300] if body is not None else ""
    return (f"{case.method} {case.formatted_path} query={case.query} body={text} -> "
            f"{response.status_code} {response.content[:300].decode('utf-8', 'replace')}")  # fmt: skip


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, on: bool) -> Any:
    if not on:
        return _NoBar()
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("fuzz"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeRemainingColumn())  # fmt: skip
    progress.start()
    task = progress.add_task("fuzz", total=total)

    class Bar:
        def update(self, n: int) -> None:
            progress.update(task, advance=n)

        def close(self) -> None:
            progress.stop()

    return Bar()


@contextmanager
def database(kind: str, tmp: Path, postgres_url: str) -> Iterator[str]:
    """A fresh database URL: a SQLite file in ``tmp`` or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'fuzz.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"de_fuzz_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def print_report(report: FuzzReport, db: str) -> None:
    by_op: dict[str, Counter[str]] = defaultdict(Counter)
    for f in report.failures:
        by_op[f.operation][",".join(f.checks)] += 1
    for op, counts in sorted(by_op.items()):
        print(f"FAIL {op}: " + "; ".join(f"{k} x{v}" for k, v in counts.items()))
    for f in report.failures:
        if f.request:
            print(f"  e.g. [{f.role}/{f.mode}] {f.request}")
    print(f"\n{'database':<10}{'role':<12}{'cases':>8}")
    for role, n in report.cases.items():
        print(f"{db:<10}{role:<12}{n:>8}")
    five = sum(v for k, v in report.statuses.items() if k >= 500)
    print(f"{db}: {report.operations} operations, {report.n_cases} cases, "
          f"{len(report.failures)} failures, {five} responses with status >= 500")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite",
                    help="database engine to run the app on")  # fmt: skip
    ap.add_argument("--postgres-url", default=DEFAULT_PG,
                    help="server URL used to create (and drop) a scratch database")  # fmt: skip
    ap.add_argument("--examples", type=int, default=40,
                    help="generated cases per operation, role and mode")  # fmt: skip
    ap.add_argument("--modes", default="positive,negative",
                    help="comma list of generation modes: positive (valid input), negative")  # fmt: skip
    ap.add_argument("--roles", default=",".join(ROLES_FUZZED), help="comma list of callers")
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = ap.parse_args(argv)
    if args.examples < 1:
        ap.error("--examples must be at least 1")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [m for m in modes if m not in ("positive", "negative")]
    if bad:
        ap.error(f"unknown mode(s) {bad}; choose positive and/or negative")
    roles = tuple(r.strip() for r in args.roles.split(",") if r.strip())
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(args.db, Path(tmp), args.postgres_url) as url,
        world(url, Path(tmp) / "data") as w,
    ):
        report = fuzz(w, examples=args.examples, modes=modes, roles=roles, progress=True)
    print_report(report, args.db)
    if args.json:
        args.json.write_text(json.dumps({"db": args.db, **report.as_dict()}, indent=1))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
