"""The built-in authorization server's rows: registered clients, signing keys, used assertion ids.

Plain rows in and out (service/auth decides what they mean); every function runs its own short
transaction on the engine. Database failures become ``Unavailable``, never a driver message.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from service.store.errors import Unavailable
from service.store.tables import auth_client, auth_signing_key, auth_used_jti

T = TypeVar("T")


@dataclass(frozen=True)
class ClientRow:
    client_id: str
    allowed_scopes: str
    created: datetime
    jwks: dict[str, Any] | None
    jwks_url: str | None


@dataclass(frozen=True)
class KeyRow:
    kid: str
    private_jwk: str
    created_at: float
    superseded_at: float | None


def _run(engine: Engine, work: Callable[[Connection], T], *, write: bool) -> T:
    try:
        if write:
            with engine.begin() as connection:
                return work(connection)
        with engine.connect() as raw:
            connection = raw.execution_options(read_only=True)
            with connection.begin():
                return work(connection)
    except IntegrityError:
        raise
    except DBAPIError:
        raise Unavailable("The database is unavailable") from None


# --- clients ---------------------------------------------------------------------------------


def _client(row: Any) -> ClientRow:
    return ClientRow(row.client_id, row.allowed_scopes, row.created, row.jwks, row.jwks_url)


def get_client(engine: Engine, client_id: str) -> ClientRow | None:
    stmt = sa.select(auth_client).where(auth_client.c.client_id == client_id)
    row = _run(engine, lambda c: c.execute(stmt).first(), write=False)
    return None if row is None else _client(row)


def list_clients(engine: Engine) -> list[ClientRow]:
    stmt = sa.select(auth_client).order_by(auth_client.c.client_id)
    return [_client(row) for row in _run(engine, lambda c: c.execute(stmt).all(), write=False)]


def add_client(engine: Engine, row: ClientRow) -> bool:
    """False when the client id is taken."""
    values = {
        "client_id": row.client_id,
        "allowed_scopes": row.allowed_scopes,
        "created": row.created,
        "jwks": row.jwks,
        "jwks_url": row.jwks_url,
    }
    try:
        _run(engine, lambda c: c.execute(auth_client.insert().values(values)), write=True)
    except IntegrityError:
        return False
    return True


def remove_client(engine: Engine, client_id: str) -> bool:
    """True when there was such a client."""
    stmt = auth_client.delete().where(auth_client.c.client_id == client_id)
    return bool(_run(engine, lambda c: c.execute(stmt).rowcount, write=True))


# --- signing keys ----------------------------------------------------------------------------


def list_keys(engine: Engine) -> list[KeyRow]:
    stmt = sa.select(auth_signing_key)
    rows = _run(engine, lambda c: c.execute(stmt).all(), write=False)
    return [KeyRow(r.kid, r.private_jwk, r.created_at, r.superseded_at) for r in rows]


def save_key(engine: Engine, row: KeyRow) -> None:
    """Insert the key, or replace the one with the same kid."""

    def work(connection: Connection) -> None:
        values = {
            "private_jwk": row.private_jwk,
            "created_at": row.created_at,
            "superseded_at": row.superseded_at,
        }
        updated = connection.execute(
            auth_signing_key.update().where(auth_signing_key.c.kid == row.kid).values(values)
        ).rowcount
        if not updated:
            connection.execute(auth_signing_key.insert().values(kid=row.kid, **values))

    _run(engine, work, write=True)


def delete_key(engine: Engine, kid: str) -> None:
    stmt = auth_signing_key.delete().where(auth_signing_key.c.kid == kid)
    _run(engine, lambda c: c.execute(stmt), write=True)


# --- used client-assertion ids ---------------------------------------------------------------


def add_jti(engine: Engine, client_id: str, jti: str, expires_at: float, now: float) -> bool:
    """Records (client_id, jti) and answers True, or False when it is recorded and not expired.
    The primary key decides between concurrent callers: one insert wins, the other fails."""

    def work(connection: Connection) -> None:
        connection.execute(
            auth_used_jti.delete().where(
                auth_used_jti.c.client_id == client_id,
                auth_used_jti.c.jti == jti,
                auth_used_jti.c.expires_at <= now,
            )
        )
        connection.execute(
            auth_used_jti.insert().values(client_id=client_id, jti=jti, expires_at=expires_at)
        )

    try:
        _run(engine, work, write=True)
    except IntegrityError:
        return False
    return True


def purge_jti(engine: Engine, now: float) -> int:
    """Forgets the ids whose assertions have expired; returns how many."""
    stmt = auth_used_jti.delete().where(auth_used_jti.c.expires_at <= now)
    return int(_run(engine, lambda c: c.execute(stmt).rowcount, write=True))
