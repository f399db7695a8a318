"""alembic environment: the schema is service.store.tables.metadata."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from service.settings import get_settings
from service.store.tables import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    # Set by service.store.migrations; the alembic CLI falls back to the service settings.
    return config.attributes.get("database_url") or get_settings().database_url


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # handed in by service.store.migrations.upgrade
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        {"sqlalchemy.url": _url()}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
