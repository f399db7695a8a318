"""Readiness: the database answers and its schema is at (or ahead of) this release's head."""

from enum import Enum

from service.store.migrations import is_current_enough
from service.store.runner import Store


class Readiness(Enum):
    READY = "ready"
    UNREACHABLE = "unreachable"
    BEHIND = "behind"


def readiness(store: Store) -> Readiness:
    try:
        # Through Store.run, every read of it: a pooled connection that died while idle (the
        # pool does not ping, store/db.py) is replaced there, so the probe reports the
        # database. (The delivery worker keeps more than one connection in the pool.)
        at_head = store.run(lambda tx: is_current_enough(tx.conn), read_only=True)
    except Exception:  # any driver error means "not ready", never a 500
        return Readiness.UNREACHABLE
    return Readiness.READY if at_head else Readiness.BEHIND
