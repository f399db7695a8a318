"""The application factory: ``service.main:create_app()``."""

import gc
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from sqlalchemy.engine import Engine

from service import __version__
from service.api import (
    authorization,
    capability,
    cds_hooks,
    docs,
    health,
    operations,
    subscriptions,
    system,
)
from service.api.errors import (
    UnexpectedErrorMiddleware,
    bearer_challenge,
    install_error_handlers,
    outcome_response,
)
from service.api.limits import RequestLimits
from service.api.rest import resource_routers
from service.api.slashes import StripTrailingSlash
from service.auth.verify import TrustedIssuer
from service.fhir.errors import Issue
from service.notify.worker import DeliveryWorker
from service.observability import ObservabilityMiddleware, configure_logging, metrics_response
from service.settings import Settings, get_settings
from service.store import migrations, reindex
from service.store.db import create_db_engine, limit_statement_time
from service.store.runner import Store
from service.usecases.authorization import (
    AuthConfigError,
    Authorization,
    AuthPolicy,
    check_key_encryption_key,
    check_policy,
    trusted_issuers,
)
from service.usecases.cds.access import CdsConfigError
from service.usecases.credentials import DatabaseKeyStore, KeyDecryptionError
from service.usecases.knowledge import load_definitions, shipped_definitions

logger = logging.getLogger("careplan")


class StartupError(RuntimeError):
    """The service cannot start: wrong database URL, database down, schema behind.

    Its message is one line, meant for an operator: ``careplan`` prints it (no traceback) and
    exits non-zero; under a bare ``uvicorn --factory`` the lifespan raises it and uvicorn
    exits with code 3 (see ``_StartupErrorFilter`` for how its log stays one line).
    """


def _one_line(value: object) -> str:
    # Driver messages span lines (psycopg adds "Is the server running...?" on its own line).
    return " ".join(str(value).split())


def connect_database(settings: Settings) -> Engine:
    """An engine for ``CAREPLAN_DATABASE_URL`` whose database answered ``SELECT 1``."""
    try:
        engine = create_db_engine(
            settings.database_url, settings.db_pool_size, settings.db_max_overflow
        )
    except (sa.exc.ArgumentError, ImportError, OSError) as exc:
        # Bad scheme or unparsable URL (ArgumentError, incl. NoSuchModuleError), a missing
        # driver (ImportError), a SQLite directory that cannot be created (OSError).
        hint = " (use postgresql+psycopg://...)" if isinstance(exc, ImportError) else ""
        raise StartupError(f"invalid CAREPLAN_DATABASE_URL: {_one_line(exc)}{hint}") from None
    try:
        wait_for_database(engine, settings.db_connect_retries, settings.db_connect_backoff_seconds)
    except BaseException:
        engine.dispose()
        raise
    return engine


# What a database server that answered says when waiting will not help: a database or role
# that does not exist, credentials or a pg_hba.conf rule that refuse the connection.
_PERMANENT_REFUSALS = (
    "does not exist",
    "authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
    "permission denied",
)


def _refused_for_good(exc: sa.exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(reason in text for reason in _PERMANENT_REFUSALS)


def wait_for_database(engine: Engine, retries: int, backoff: float) -> None:
    """Connect, retrying ``retries`` times ``backoff`` seconds apart; StartupError at the end,
    or at once when the server refused the connection for a reason time does not change."""
    where = engine.url.render_as_string(hide_password=True)
    for attempt in range(retries + 1):
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return
        except sa.exc.DBAPIError as exc:
            if _refused_for_good(exc):
                raise StartupError(
                    f"database {where} refused the connection: {_one_line(exc.orig)}"
                ) from None
            if attempt == retries:
                raise StartupError(
                    f"database {where} unreachable after {retries + 1} attempt"
                    f"{'s' if retries else ''}: {_one_line(exc.orig)}"
                ) from None
            logger.warning(
                "database not reachable yet (attempt %d of %d), retrying in %ss",
                attempt + 1,
                retries + 1,
                backoff,
                extra={"reason": _one_line(exc.orig)},
            )
            time.sleep(backoff)


def check_schema(engine: Engine, *, migrate: bool) -> reindex.ReindexReport | None:
    """Migrate to head (``migrate``) or insist the schema is at or ahead of the code's head.

    Migrating also reindexes when the search index rows were built by another release's
    indexer; without ``migrate`` such an index is only reported (a rolling upgrade has old
    and new releases side by side, so "other" may well be newer).
    """
    try:
        if migrate:
            migrations.upgrade(engine)
            return reindex.reindex_if_stale(engine)
        if migrations.is_current_enough(engine):
            # At head, or ahead of it: a newer release migrated first (rolling upgrade), the
            # same rule /readyz applies.
            if not reindex.is_current(engine):
                logger.warning(
                    "the search index was built by another release's indexer: "
                    "run `careplan migrate` to reindex"
                )
            return None
        current = migrations.current_revision(engine)
    except sa.exc.SQLAlchemyError as exc:
        action = "migrating" if migrate else "reading the schema revision"
        raise StartupError(
            f"database error while {action}: {_one_line(getattr(exc, 'orig', None) or exc)}"
        ) from None
    state = f"at revision {current}" if current else "empty (no migrations applied)"
    raise StartupError(
        f"database schema is {state}, this release needs {migrations.head_revision()}: "
        "run `careplan migrate` (or set CAREPLAN_MIGRATE_ON_START=true)"
    )


def prepare_database(settings: Settings) -> Engine:
    """Connect (bounded retries) and bring or check the schema; StartupError when impossible."""
    engine = connect_database(settings)
    try:
        check_schema(engine, migrate=settings.migrate_on_start)
    except BaseException:
        engine.dispose()
        raise
    return engine


class _StartupErrorFilter(logging.Filter):
    """Shorten uvicorn's report of a failed lifespan to the StartupError's one line.

    Starlette hands uvicorn the formatted traceback as the ``lifespan.startup.failed``
    message, which uvicorn logs on ``uvicorn.error``. A StartupError is an operator-facing
    condition, not a bug: its traceback only hides the message.
    """

    _MARKER = f"{__name__}.StartupError: "

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Traceback") and self._MARKER in message:
            record.msg = "startup failed: " + message.rsplit(self._MARKER, 1)[1].strip()
            record.args = ()
        return True


_STARTUP_ERROR_FILTER = _StartupErrorFilter()


def _freeze_startup_objects() -> None:
    """Leave what start-up built (modules, R4 model classes, validators) out of later garbage
    collections. A full collection walked ~185,000 such objects in ~38 ms, on whichever
    request triggered it: the 1-connection p99 of a session submission fell from 26-30 to
    ~9 ms with this (bench/README.md). Once per process: a test process starts many apps,
    and frozen objects are never freed."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def check_auth_settings(settings: Settings) -> tuple[AuthPolicy, list[TrustedIssuer]]:
    """The authorization mode and trusted issuers; StartupError (one line) when they cannot
    be used: CAREPLAN_AUTH=off off loopback, malformed issuers, a malformed encryption key."""
    try:
        policy = check_policy(settings.auth, settings.host)
        issuers = trusted_issuers(settings.auth_issuers, settings.base_url)
        check_key_encryption_key(settings.auth_key_encryption_key)
    except AuthConfigError as error:
        raise StartupError(str(error)) from None
    return policy, issuers


def check_signing_keys(key_store: DatabaseKeyStore) -> None:
    """StartupError unless the stored signing keys can be read with the configured key."""
    try:
        key_store.check_readable()
    except KeyDecryptionError as error:
        raise StartupError(str(error)) from None


def _start_authorization(
    settings: Settings, engine: Engine, policy: AuthPolicy, issuers: list[TrustedIssuer]
) -> Authorization:
    authorization = Authorization(
        engine,
        policy,
        issuers=issuers,
        token_lifetime=settings.auth_token_lifetime_seconds,
        key_encryption_key=settings.auth_key_encryption_key,
    )
    check_signing_keys(authorization.key_store)
    if policy.open_at_start:
        how = "CAREPLAN_AUTH=off" if settings.auth == "off" else "CAREPLAN_AUTH=auto"
        logger.warning(
            "tokens are not required: the service is bound to the loopback address %s (%s); "
            "anyone on this machine can read and change every record. Set "
            "CAREPLAN_AUTH=required before exposing it.",
            settings.host,
            how,
        )
    return authorization


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Refused before anything starts: an app that would run open off loopback is never built.
    policy, issuers = check_auth_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Raises StartupError (one line) when the database is wrong, down or behind.
        engine = prepare_database(settings)
        worker: DeliveryWorker | None = None
        try:
            limit_statement_time(engine, settings.db_statement_timeout_ms)
            app.state.store = Store(engine)
            app.state.authorization = _start_authorization(settings, engine, policy, issuers)
            try:
                app.state.cds = cds_hooks.start(settings, app.state.store, policy)
            except CdsConfigError as exc:
                raise StartupError(f"CDS Hooks settings: {exc}") from None
            if settings.load_protocol:
                load_definitions(app.state.store, shipped_definitions())
            _freeze_startup_objects()
            if settings.delivery_worker:
                worker = DeliveryWorker(engine, settings)
                worker.start()
            try:
                yield
            finally:
                await app.state.cds.close()
        finally:
            if worker is not None:
                worker.stop()
            engine.dispose()

    app = FastAPI(
        title="flexion-careplan",
        version=__version__,
        summary="FHIR R4 care-plan service for the Flexion in Lying protocol",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # StripTrailingSlash accepts `/fhir/...` with a trailing slash: never a 307 redirect.
        redirect_slashes=False,
    )
    app.state.settings = settings
    configure_logging(settings.log_level)
    logging.getLogger("uvicorn.error").addFilter(_STARTUP_ERROR_FILTER)
    # The last added runs first: unexpected errors are answered inside the request id's scope,
    # and the observability middleware logs and counts the limits' 408s and 503s.
    app.add_middleware(StripTrailingSlash)
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(
        RequestLimits,
        body_timeout=settings.body_timeout_seconds,
        max_concurrent=settings.max_concurrent_requests,
    )
    app.add_middleware(ObservabilityMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
    # Before the FHIR routes: a hook call is matched without walking the ~200 of them.
    app.include_router(cds_hooks.router)
    app.include_router(capability.router)
    app.include_router(authorization.router)
    app.include_router(system.router)
    # Operations first: /fhir/PlanDefinition/$apply must not be read as an id.
    app.include_router(operations.router)
    app.include_router(subscriptions.router)
    for router in resource_routers():
        app.include_router(router)
    docs.install(app)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        if not _metrics_allowed(request, policy, settings.metrics_token):
            challenge = bearer_challenge("invalid_token", "/metrics needs CAREPLAN_METRICS_TOKEN")
            issue = Issue("login", "/metrics needs its own bearer token (CAREPLAN_METRICS_TOKEN)")
            return outcome_response(401, [issue], {"WWW-Authenticate": challenge})
        body, content_type = metrics_response()
        return Response(body, media_type=content_type)

    return app


def _metrics_allowed(request: Request, policy: AuthPolicy, token: str) -> bool:
    """Open with the service; else only with CAREPLAN_METRICS_TOKEN as a bearer token (none
    configured: never)."""
    server = request.scope.get("server")
    if policy.is_open(server[0] if server else None):
        return True
    if not token:
        return False
    sent = request.headers.get("authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
