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
    max_search_clauses: int = Field(
        32,
        ge=1,
        description="Most criteria one search may have (search parameters, `_sort` keys and "
        "`_include`s together); more answer 400. The default admits every parameter of a "
        "type once.",
    )
    max_search_values: int = Field(
        100,
        ge=1,
        description="Most values (comma-separated, OR-ed) one search may have in its "
        "parameters together; more answer 400.",
    )
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
    keep_alive_seconds: int = Field(
        5,
        ge=1,
        description="A connection idle this long (before its first request or between "
        "requests), or this slow to send a request's line and headers, is closed.",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="How long a request's body may take to arrive once its headers have; "
        "a late body is answered 408 and its connection closed.",
    )
    max_concurrent_requests: int = Field(
        64,
        ge=1,
        description="Requests one worker process handles at once; beyond, 503 with Retry-After "
        "(/healthz and /readyz excepted).",
    )
    db_statement_timeout_ms: int = Field(
        10_000,
        ge=0,
        description="PostgreSQL: longest a statement of a request may run before the database "
        "cancels it (the request then answers 503); 0 = no limit.",
    )
    log_level: str = Field(
        "INFO", description="Log level: CRITICAL, ERROR, WARNING, INFO or DEBUG."
    )
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

    subscription_endpoints: str = Field(
        "",
        description="URL prefixes (comma-separated) a Subscription's rest-hook endpoint must "
        "start with, e.g. https://scheduling.example.org/fhir-hooks/; empty = no endpoint is "
        "allowed.",
    )
    delivery_worker: bool = Field(
        True,
        description="Run the notification delivery worker inside `careplan serve` (false when "
        "`careplan worker` runs on its own).",
    )
    delivery_threads: int = Field(
        4,
        ge=1,
        le=64,
        description="Subscriptions a worker process delivers to at once (PostgreSQL; SQLite "
        "uses one).",
    )
    delivery_poll_seconds: float = Field(
        1.0,
        gt=0,
        description="How often an idle worker looks for new events, due timers and "
        "heartbeats (a process that committed an event wakes its own worker at once).",
    )
    delivery_backoff_seconds: float = Field(
        1.0, gt=0, description="First retry delay of a failed notification (then doubling)."
    )
    delivery_backoff_max_seconds: float = Field(
        3600.0, gt=0, description="Longest delay between two delivery attempts."
    )
    delivery_give_up_seconds: float = Field(
        86400.0,
        gt=0,
        description="How long a subscription's endpoint may keep failing before the "
        "subscription turns `error`.",
    )

    cds_clients: str = Field(
        "",
        description="CDS Hooks clients (EHRs) whose signed JWTs are accepted: a JSON list of "
        "`{issuer, jwks_uri | jwks}`.",
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

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        name = value.strip().upper()
        if name not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return name


# The levels both Python's logging and uvicorn know.
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


@lru_cache
def get_settings() -> Settings:
    return Settings()
