"""ASGI entry point for uvicorn: ``uvicorn annotator_ui.main:app`` (settings from the environment)."""

from annotator_ui.app import create_app

app = create_app()
