"""The `dataengine` command line. Each module in COMMANDS adds its commands with ``register``."""

from __future__ import annotations

import importlib

import typer

COMMANDS = [
    "up",
    "database",
    "project",
    "ingest",
    "user",
    "serve",
    "models",
    "prefill",
    "flywheel",
    "curate",
    "export",
    "interop",
    "worker",
    "backup",
]

app = typer.Typer(
    name="dataengine",
    help="Data Engine: model pre-fill, browser annotation, effort accounting, flywheel metrics, "
    "curation and exports. Settings come from DATAENGINE_* variables or .env (see .env.example).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _name in COMMANDS:
    importlib.import_module(f"scripts.commands.{_name}").register(app)


def main() -> None:
    from annotator_ui.logs import configure_logging
    from annotator_ui.settings import Settings

    configure_logging(Settings(), level="WARNING")  # DATAENGINE_LOG_FORMAT=json for JSON lines
    app()


if __name__ == "__main__":
    main()
