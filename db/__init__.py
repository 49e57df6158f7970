"""Persistence: SQLAlchemy models, sessions, Alembic migrations and keyword-only data functions."""
