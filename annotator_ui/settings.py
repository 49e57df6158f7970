"""The one settings class. Read at the edges (CLI entry, app factory) and passed down.

Every field can be set with an environment variable named ``DATAENGINE_<FIELD>``
(upper case) or in a ``.env`` file; ``.env.example`` documents them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration for the CLI, the web app and the workers."""

    model_config = SettingsConfigDict(
        env_prefix="DATAENGINE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Storage
    data_dir: Path = Field(
        default=Path("var"),
        description="Root for the SQLite file, the managed image store, caches and exports.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty means sqlite:///<data_dir>/dataengine.db. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )

    # Ingest
    max_image_pixels: int = Field(
        default=100_000_000,
        description="Images with more pixels than this are rejected before decoding.",
    )

    mask_payload_max_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest mask payload accepted (characters of a compressed RLE, bytes of a "
        "brush RLE or PNG; half as many runs or polygon coordinates); larger ones get 422.",
    )

    # Segmentation
    backend: Literal["classical", "sam"] = Field(
        default="classical", description="Segmentation backend used by the app and pre-fill."
    )
    sam_model: str = Field(
        default="vit_t", description="SAM model type: vit_t, vit_b, vit_l, vit_h."
    )
    sam_checkpoint: Path | None = Field(
        default=None, description="Path to a SAM / MobileSAM checkpoint (.pth). Required for sam."
    )
    sam_checkpoint_sha256: str | None = Field(
        default=None, description="Expected sha256 of the checkpoint; checked when set."
    )
    device: str = Field(default="cpu", description="torch device for the sam backend.")
    embedding_cache_items: int = Field(
        default=32,
        description="Embeddings kept in the in-memory LRU (the disk cache is unbounded).",
    )

    # Web app
    host: str = Field(default="127.0.0.1", description="Address the web app binds.")
    port: int = Field(default=8000, description="Port the web app binds.")
    session_hours: float = Field(default=12.0, description="Lifetime of a login session cookie.")
    cookie_secure: bool = Field(
        default=False, description="Mark the session cookie Secure (set true behind HTTPS)."
    )
    lease_minutes: float = Field(
        default=30.0, description="A task lease expires this long after its last heartbeat."
    )
    idle_seconds: float = Field(
        default=30.0, description="Gap cap for active-time accounting (DESIGN section 5)."
    )
    ml_backend_basic_auth: str | None = Field(
        default=None, description="user:password required by the Label Studio ML backend, if set."
    )

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file inside ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dataengine.db').resolve()}"

    @property
    def image_store(self) -> Path:
        """Managed store for ``ingest --copy``."""
        return self.data_dir / "images"

    @property
    def cache_dir(self) -> Path:
        """Embedding cache and thumbnails."""
        return self.data_dir / "cache"


def get_settings() -> Settings:
    """Read the settings from the environment (call at the edges only)."""
    return Settings()
