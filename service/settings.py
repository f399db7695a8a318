"""Service settings, read from the environment (prefix ``CAREPLAN_``) or a ``.env`` file."""

from functools import lru_cache
from typing import Literal

from pydantic import Field
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
    cds_clients: str = Field(
        "",
        description="CDS Hooks clients (EHRs) whose signed JWTs are accepted: a JSON list of "
        "`{issuer, jwks_uri | jwks}`.",
    )
    cds_require_jwt: Literal["auto", "true", "false"] = Field(
        "auto",
        description="Whether CDS Hooks calls need the EHR's JWT: `auto` = yes unless "
        "`CAREPLAN_HOST` is a loopback address; `false` is refused on any other address.",
    )
    cds_fhir_servers: str = Field(
        "",
        description="Comma-separated `fhirServer` base URLs the CDS Hooks services may read "
        "from (https, or http to loopback); any other `fhirServer` is never called.",
    )
    cds_fhir_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=30,
        description="How long a CDS Hooks call may wait for the EHR's FHIR server, all its "
        "reads together.",
    )
    cds_trusted_identifier_systems: str = Field(
        "",
        description="Comma-separated identifier systems whose values name the same patient "
        "here and in the EHR (matching a CDS Hooks patient to a stored Patient).",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
