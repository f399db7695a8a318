"""Run and inspect alembic migrations from code (start-up, `careplan migrate`, /readyz)."""

import logging
import os
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine


def _script_location() -> Path:
    candidates = [
        os.environ.get("CAREPLAN_ALEMBIC_DIR"),
        Path(__file__).resolve().parents[2] / "alembic",  # source checkout / editable install
        Path.cwd() / "alembic",  # container image: WORKDIR holds alembic/
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "env.py").is_file():
            return Path(candidate)
    raise RuntimeError("alembic/ not found; set CAREPLAN_ALEMBIC_DIR")


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def upgrade(engine: Engine) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(bind: Engine | Connection) -> str | None:
    """The applied revision, read on ``bind``: an engine's new connection, or a connection
    already open (readiness reads it inside a Store unit, which replaces a dead one)."""
    # Readiness probes call this every few seconds; alembic would log two INFO lines each time.
    migration_log = logging.getLogger("alembic.runtime.migration")
    level = migration_log.level
    migration_log.setLevel(logging.WARNING)
    try:
        if isinstance(bind, Connection):
            return MigrationContext.configure(bind).get_current_revision()
        with bind.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        migration_log.setLevel(level)


def is_at_head(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def is_current_enough(bind: Engine | Connection) -> bool:
    """The code's head is applied: at head, or ahead of it (a newer release migrated first).

    During a rolling upgrade the migration job moves the schema ahead while old pods still
    serve; they must stay ready, since migrations are additive across one release.
    """
    current = current_revision(bind)
    if current is None:
        return False
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    return current == head_revision() or current not in known
