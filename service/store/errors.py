"""What the store reports, in its own words: the API maps these to OperationOutcomes
(service/api/errors.py), the CLI to one-line messages."""


class StoreError(Exception):
    """Base of the store's errors; ``str(error)`` is a message safe to show a caller."""


class NotFound(StoreError):
    """No such resource (or version)."""


class Gone(StoreError):
    """The resource (or that version of it) is a deletion."""


class PreconditionFailed(StoreError):
    """A client's condition does not hold: If-Match on another version, or If-None-Exist
    criteria matching more than one resource (``ambiguous``)."""

    def __init__(self, message: str, *, ambiguous: bool = False) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous


class Conflict(StoreError):
    """A concurrent writer won every retry: the caller may try again."""


class Unavailable(StoreError):
    """The database cannot answer now (down, locked, pool exhausted): a transient failure."""


class TimedOut(StoreError):
    """The database cancelled a statement that ran longer than the statement timeout
    (CAREPLAN_DB_STATEMENT_TIMEOUT_MS); nothing of the unit was written."""


class InvalidQuery(StoreError):
    """A search value the query builder cannot use (a malformed number, reference, cursor)."""


class RetryTransaction(Exception):
    """Internal: a unique key or a version check said another transaction won a race; the
    runner runs the unit again (and reports Conflict when every retry lost)."""
