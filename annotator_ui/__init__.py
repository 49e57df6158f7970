"""The annotators' web app: FastAPI routes plus a static ES-module client."""
