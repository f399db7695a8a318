"""Service settings, read from the environment (prefix ``CAREPLAN_``) or a ``.env`` file."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAREPLAN_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///./data/careplan.db",
        description="SQLAlchemy URL: sqlite:///path (embedded) or postgresql+psycopg://...",
    )
    host: str = Field("127.0.0.1", description="Bind address of `careplan serve`.")
    port: int = Field(8000, ge=1, le=65535, description="Bind port of `careplan serve`.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes of `careplan serve`.")
    base_url: str = Field(
        "",
        description="Public base URL of the FHIR endpoint (e.g. https://host/fhir); "
        "empty = derived from each request.",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest accepted request body; larger ones get 413."
    )
    max_json_depth: int = Field(64, ge=8, description="Deepest accepted JSON nesting.")
    default_page_size: int = Field(20, ge=1, description="Search page size without _count.")
    max_page_size: int = Field(500, ge=1, description="Upper bound on _count.")
    load_protocol: bool = Field(
        True, description="Load the shipped protocol definitions at start-up."
    )
    migrate_on_start: bool = Field(
        True,
        description="Apply alembic migrations at start-up (set false when a migration job runs).",
    )
    db_connect_retries: int = Field(
        10, ge=0, description="How often start-up retries an unreachable database."
    )
    db_connect_backoff_seconds: float = Field(
        1.0, ge=0, description="Delay between start-up database retries."
    )
    db_pool_size: int = Field(
        10, ge=1, description="PostgreSQL connections each worker process keeps open."
    )
    db_max_overflow: int = Field(
        20,
        ge=0,
        description="PostgreSQL connections a worker may open beyond the pool under load "
        "(closed when idle again).",
    )
    log_level: str = Field("INFO", description="Python log level name.")
    graceful_shutdown_seconds: int = Field(
        20, ge=0, description="How long in-flight requests may run after SIGTERM."
    )
    auth: Literal["auto", "required", "off"] = Field(
        "auto",
        description="Bearer tokens: `required`; `auto` = required unless bound to a loopback "
        "address (then open, with a warning); `off` = open, refused unless bound to loopback.",
    )
    auth_issuers: str = Field(
        "",
        description="Trusted external token issuers, a JSON list of "
        "{issuer, jwks_uri | jwks, audience} (audience defaults to CAREPLAN_BASE_URL).",
    )
    auth_token_lifetime_seconds: int = Field(
        300, ge=60, le=3600, description="Lifetime of the access tokens the built-in server issues."
    )
    auth_key_encryption_key: str = Field(
        "",
        description="Fernet key (urlsafe base64 of 32 bytes) that encrypts the built-in "
        "server's signing keys in the database; empty = stored unencrypted.",
    )
    metrics_token: str = Field(
        "",
        description="Bearer token /metrics requires while tokens are required; empty = "
        "/metrics answers only when the service runs open.",
    )

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_long_enough(cls, value: str) -> str:
        if value and len(value) < 16:
            raise ValueError("use at least 16 characters (or leave it empty)")
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
