"""Readiness: the database answers and its schema is at (or ahead of) this release's head."""

from enum import Enum

import sqlalchemy as sa

from service.store.migrations import is_current_enough
from service.store.runner import Store


class Readiness(Enum):
    READY = "ready"
    UNREACHABLE = "unreachable"
    BEHIND = "behind"


def readiness(store: Store) -> Readiness:
    try:
        # Through Store.run: a pooled connection that died while idle (the pool does not
        # ping, store/db.py) is replaced there, so the probe reports the database.
        store.run(lambda tx: tx.conn.execute(sa.text("SELECT 1")), read_only=True)
        at_head = is_current_enough(store.engine)
    except Exception:  # any driver error means "not ready", never a 500
        return Readiness.UNREACHABLE
    return Readiness.READY if at_head else Readiness.BEHIND
