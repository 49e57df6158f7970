"""The one settings class. Read at the edges (CLI entry, app factory) and passed down.

It lives here, below both edges, so the CLI and the web app import it without each other;
nothing under ``engine/`` or ``db/`` reads it: their functions take plain arguments.

Every field can be set with an environment variable named ``DATAENGINE_<FIELD>``
(upper case) or in a ``.env`` file; ``.env.example`` documents them all.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
        gt=0,
        description="Images with more pixels than this are rejected before decoding, at ingest "
        "and on every route that decodes. Pillow's own decompression-bomb check (about 179 MP) "
        "also stays active.",
    )
    max_image_bytes: int = Field(
        default=256 * 1024 * 1024,
        gt=0,
        description="Objects read from object storage or the web (s3://, gs://, az://, "
        "http(s)://) larger than this are refused before decoding; at most this many bytes "
        "are read.",
    )
    presigned_redirect: bool = Field(
        default=False,
        description="GET /api/images/{id}/file answers an s3:// image stored as is with a 307 "
        "redirect to a presigned URL (the browser then reads the bucket directly) instead of "
        "streaming it through the app.",
    )
    presigned_expiry_seconds: int = Field(
        default=900, gt=0, le=7 * 24 * 3600, description="Lifetime of those presigned URLs."
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long an app process reuses a token's user without asking the "
        "database (0 = every request asks). Logout, password and role changes clear it in the "
        "process that made them at once; other processes (serve --workers) within this time.",
    )
    min_image_side: int = Field(
        default=32,
        ge=1,
        description="Images with a side shorter than this (px) are rejected at ingest: too "
        "small to segment.",
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
    device: str = Field(
        default="cpu", description="torch device for the sam backend (cpu, cuda, cuda:1, or auto)."
    )
    ray_address: str = Field(
        default="",
        description="Ray cluster for `prefill --ray` / `embed --ray` (auto, HOST:6379, "
        "ray://HOST:10001); empty: a local cluster on this machine.",
    )
    embedding_cache_items: int = Field(
        default=32,
        description="Embeddings kept in the in-memory LRU (the stored cache is bounded by "
        "embedding_cache_max_bytes).",
    )
    embedding_cache_url: str = Field(
        default="",
        description="Where embeddings are cached: a folder, or an fsspec URL such as "
        "s3://bucket/prefix or memory://cache. Empty means <data_dir>/cache.",
    )
    embedding_cache_max_bytes: int = Field(
        default=20 * 1024**3,
        ge=0,
        description="Size limit of the stored embedding cache; the least recently used files "
        "are evicted past it (a SAM embedding is about 2 MB). 0 = unbounded.",
    )
    prefill_cache_embeddings: bool = Field(
        default=False,
        description="Pre-fill writes each image's embedding to the cache (`dataengine prefill "
        "--cache-embeddings`); off by default: bulk pre-fill would fill it with embeddings "
        "that may never be opened. `dataengine embed` always writes.",
    )

    # Pre-fill workers
    claim_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A pre-fill worker's claim on an image lives this long (renewed while it "
        "works); a dead worker's images are taken over by the others after it.",
    )
    claim_batch: int = Field(
        default=4, ge=1, description="Images a pre-fill worker claims at a time."
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
        default=30.0, description="Gap cap for active-time accounting (docs/effort.md)."
    )
    event_grace_minutes: float = Field(
        default=15.0,
        description="An annotator's effort events for an image are accepted while their lease "
        "on it is live and this long after it expired or was submitted (batches still in the "
        "browser's outbox).",
    )
    ml_backend_auth: Literal["token", "basic", "none"] = Field(
        default="token",
        description="Authentication of the Label Studio ML backend (/ml/*): 'token' = the app's "
        "own API tokens (Authorization: Bearer <token> or Token <token>); 'basic' = HTTP basic "
        "auth with ml_backend_basic_auth (tokens work too); 'none' = anonymous, refused unless "
        "the app binds a loopback address. Defaults to 'basic' when ml_backend_basic_auth is set.",
    )
    ml_backend_basic_auth: str | None = Field(
        default=None,
        description="NAME:PASSWORD for ml_backend_auth='basic'; NAME is an app user (its role "
        "rights apply to every /ml request), PASSWORD is this secret, not the user's login.",
    )
    ml_backend_prefill_on_predict: bool = Field(
        default=True,
        description="/ml/predict answers images not pre-filled yet with an empty prediction at "
        "once and pre-fills them in a background task of the app; false leaves them to "
        "`dataengine worker`.",
    )

    @model_validator(mode="after")
    def _ml_auth_consistent(self) -> Settings:
        if self.ml_backend_basic_auth and self.ml_backend_auth != "basic":
            if "ml_backend_auth" in self.model_fields_set:
                raise ValueError(
                    f"ml_backend_basic_auth is set but ml_backend_auth is "
                    f"{self.ml_backend_auth!r}: set DATAENGINE_ML_BACKEND_AUTH=basic, or unset "
                    "DATAENGINE_ML_BACKEND_BASIC_AUTH"
                )
            self.ml_backend_auth = "basic"
        if self.ml_backend_auth == "basic":
            name, sep, secret = (self.ml_backend_basic_auth or "").partition(":")
            if not (name and sep and secret):
                raise ValueError(
                    "ml_backend_auth='basic' needs DATAENGINE_ML_BACKEND_BASIC_AUTH=NAME:PASSWORD "
                    "(NAME an app user: dataengine user add NAME --role ...)"
                )
        return self

    # Observability
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines as text, or one JSON object per line (for log shippers). "
        "Every line carries the request id (X-Request-ID) of the request it belongs to.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level logged by `dataengine serve` and the worker."
    )

    # Accounts and HTTP hardening
    max_token_hours: float = Field(
        default=24 * 90,
        gt=0,
        le=24 * 366 * 10,
        description="Longest lifetime of an API token (POST /api/auth/tokens, user token).",
    )
    login_throttle: bool = Field(
        default=True,
        description="Refuse logins (429 + Retry-After) after repeated failures per account and "
        "per client address, with exponential back-off. Counters live in the database, so "
        "every app process shares them.",
    )
    login_free_failures_account: int = Field(
        default=5, ge=1, description="Failed logins per account before back-off starts."
    )
    login_free_failures_address: int = Field(
        default=20, ge=1, description="Failed logins per client address before back-off starts."
    )
    login_backoff_seconds: float = Field(
        default=1.0, gt=0, description="First back-off; it doubles with every further failure."
    )
    login_backoff_max_seconds: float = Field(
        default=900.0, gt=0, description="Longest back-off after repeated failures."
    )
    max_concurrent_password_checks: int = Field(
        default=1,
        ge=0,
        description="argon2 verifications running at once per process (0 = no bound); further "
        "logins wait in the event loop, not on a worker thread.",
    )
    password_check_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Lower the CPU priority of password-check threads by this (Linux nice, "
        "per thread): a login flood yields the CPU to other users' requests. 0 = unchanged.",
    )
    max_waiting_password_checks: int = Field(
        default=8,
        ge=0,
        description="Logins allowed to wait for a verification slot; more get 429 at once.",
    )
    max_request_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body; larger ones get 413 (checked while streaming).",
    )
    max_json_depth: int = Field(
        default=32, ge=2, description="Deepest nesting of arrays/objects in a JSON body (422)."
    )
    max_draft_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest task draft (heartbeat ``draft`` as JSON); larger ones get 413.",
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

    @property
    def embedding_cache_location(self) -> str:
        """Where the embedding cache lives: ``embedding_cache_url`` or ``cache_dir``."""
        return self.embedding_cache_url or str(self.cache_dir)


LOOPBACK_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; an empty host, 0.0.0.0, :: or any other name
    binds (or may resolve to) a reachable interface."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UnsafeBinding(ValueError):
    """The configuration would expose an anonymous endpoint on the network."""


def check_binding(settings: Settings, host: str) -> None:
    """Raise UnsafeBinding (one-line reason naming the fix) when ``host`` is not a loopback
    address while the Label Studio ML backend is anonymous (``ml_backend_auth='none'``)."""
    if settings.ml_backend_auth == "none" and not is_loopback(host):
        raise UnsafeBinding(
            f"refusing to serve on {host or '(all interfaces)'} with DATAENGINE_ML_BACKEND_AUTH=none "
            "(anyone could read and write masks through /ml): bind 127.0.0.1 or set "
            "DATAENGINE_ML_BACKEND_AUTH=token"
        )


def get_settings() -> Settings:
    """Read the settings from the environment (call at the edges only)."""
    return Settings()
