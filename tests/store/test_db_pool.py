"""PostgreSQL connections per process come from the settings, so an operator can keep
replicas x (pool + overflow) under the server's max_connections (README, Deploy)."""

import pytest
from pydantic import ValidationError

from service.main import connect_database
from service.settings import Settings


@pytest.mark.postgres
def test_the_pool_bounds_come_from_the_settings(postgres_schema_url: str) -> None:
    settings = Settings(
        database_url=postgres_schema_url, db_pool_size=3, db_max_overflow=1, db_connect_retries=0
    )
    engine = connect_database(settings)
    try:
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 1  # type: ignore[attr-defined]
    finally:
        engine.dispose()


@pytest.mark.parametrize(("field", "value"), [("db_pool_size", 0), ("db_max_overflow", -1)])
def test_a_pool_bound_out_of_range_is_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})  # type: ignore[arg-type]
