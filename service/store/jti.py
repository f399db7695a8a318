"""The JWT ids already presented, in the database: a JWT works once whichever replica it
reaches (the storage of auth.jti_store.JtiStore, shared by every process on one database).

A row lives until its JWT has expired (the JWT is then refused for its ``exp`` anyway);
expired rows are deleted by the next check, through the index on ``expires_at``.
"""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from service.store.repository import Tx
from service.store.tables import used_jti

_VALUES: dict[str, Any] = {
    "issuer": sa.bindparam("issuer_"),
    "jti": sa.bindparam("jti_"),
    "expires_at": sa.bindparam("expires_at_"),
}
# The primary key decides: of two concurrent inserts of one (issuer, jti), one inserts a row.
_INSERT = {
    "sqlite": sqlite_insert(used_jti).values(_VALUES).on_conflict_do_nothing(),
    "postgresql": postgresql_insert(used_jti).values(_VALUES).on_conflict_do_nothing(),
}
_FORGET = used_jti.delete().where(used_jti.c.expires_at <= sa.bindparam("now_"))


def first_use(tx: Tx, issuer: str, jti: str, expires_at: float, now: float) -> bool:
    """Records (issuer, jti) until ``expires_at``: True, or False when it is recorded already."""
    tx.db.execute(_FORGET, {"now_": now})
    insert = _INSERT["sqlite" if tx.sqlite else "postgresql"]
    _, inserted = tx.db.execute(insert, {"issuer_": issuer, "jti_": jti, "expires_at_": expires_at})
    return inserted == 1
