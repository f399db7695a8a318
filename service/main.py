"""The application factory: ``service.main:create_app()``."""

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Response
from sqlalchemy.engine import Engine

from service import __version__, enrolment, sessions
from service.api import capability, health, operations, system
from service.api.errors import install_error_handlers
from service.api.rest import resource_router
from service.hooks import Hooks
from service.knowledge import load_definitions, shipped_definitions
from service.observability import ObservabilityMiddleware, configure_logging, metrics_response
from service.settings import Settings, get_settings
from service.store import migrations
from service.store.db import create_db_engine
from service.store.repository import Store

logger = logging.getLogger("careplan")


class StartupError(RuntimeError):
    """The service cannot start: wrong database URL, database down, schema behind."""


def wait_for_database(engine: Engine, retries: int, backoff: float) -> None:
    for attempt in range(retries + 1):
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return
        except sa.exc.OperationalError as exc:
            if attempt == retries:
                raise StartupError(
                    f"database {engine.url.render_as_string(hide_password=True)} unreachable "
                    f"after {retries + 1} attempts: {exc.orig}"
                ) from None
            logger.warning("database not reachable yet (attempt %d)", attempt + 1)
            time.sleep(backoff)


def prepare_database(settings: Settings) -> Engine:
    try:
        engine = create_db_engine(settings.database_url)
    except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
        raise StartupError(f"invalid CAREPLAN_DATABASE_URL: {exc}") from None
    wait_for_database(engine, settings.db_connect_retries, settings.db_connect_backoff_seconds)
    if settings.migrate_on_start:
        migrations.upgrade(engine)
    elif not migrations.is_at_head(engine):
        raise StartupError(
            f"database schema is at {migrations.current_revision(engine)}, code expects "
            f"{migrations.head_revision()}: run `careplan migrate`"
        )
    return engine


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = prepare_database(settings)
        app.state.store = Store(engine)
        if settings.load_protocol:
            load_definitions(app.state.store, shipped_definitions())
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="flexion-careplan",
        version=__version__,
        summary="FHIR R4 care-plan service for the Flexion in Lying protocol",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.hooks = Hooks(
        validators={
            "CarePlan": [enrolment.validate_care_plan],
            "Observation": [sessions.validate_pain_observation],
        },
        after_write=[sessions.on_observations_written],
    )
    configure_logging(settings.log_level)
    app.add_middleware(ObservabilityMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(capability.router)
    app.include_router(system.router)
    # Operations first: /fhir/PlanDefinition/$apply must not be read as an id.
    app.include_router(operations.router)
    app.include_router(resource_router())

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = metrics_response()
        return Response(body, media_type=content_type)

    return app
