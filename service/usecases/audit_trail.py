"""The audit trail: one AuditEvent (service/audit/) for every interaction, written with the
work it records.

- A write's event is created in the write's own unit of work (``record``): both commit, or
  neither does.
- A read's event too (``read``): the read runs in a write unit that also stores its event, so
  the event is durable before the answer leaves (bench/README.md, "Audit of reads", has the
  measurement behind this choice; on SQLite concurrent reads share one COMMIT).
- A request that failed or was refused leaves nothing of its own work (a failed unit rolls
  back), so its event is written afterwards in a small unit of its own (``record_alone``).

Events are stored like any resource, through the repository, and the API never writes them.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from service.audit.events import Circumstances, Happened, audit_event
from service.audit.subjects import patients_in, version_reference
from service.fhir.dates import utc_now
from service.store.repository import Tx
from service.store.runner import Store

Json = dict[str, Any]
T = TypeVar("T")


def _nothing() -> None:
    return None


def _status_of(error: Exception) -> tuple[int, str]:
    status = getattr(error, "status", 500)
    return (status if isinstance(status, int) else 500), str(error)


@dataclass(frozen=True)
class Audit:
    """The circumstances of one request; what to call once its event is committed (the API
    marks the request as audited, so its error path does not record it twice); and how the
    API answers an error (status and text), for errors a use case answers itself (a batch
    entry's)."""

    circumstances: Circumstances
    committed: Callable[[], None] = _nothing
    explain: Callable[[Exception], tuple[int, str]] = _status_of


@dataclass(frozen=True)
class Touched:
    """What an interaction read or wrote: versioned references, the bodies whose patients the
    event names, and patients named otherwise (a search's criteria)."""

    resources: tuple[str, ...] = ()
    bodies: tuple[Json | None, ...] = ()
    patients: tuple[str, ...] = ()

    @classmethod
    def of(cls, bodies: Iterable[Json | None], patients: Iterable[str] = ()) -> "Touched":
        """Touched resources given by their stored bodies (id and meta.versionId)."""
        kept = tuple(bodies)
        resources = tuple(
            version_reference(b["resourceType"], b["id"], (b.get("meta") or {}).get("versionId"))
            for b in kept
            if b is not None and isinstance(b.get("id"), str)
        )
        return cls(resources, kept, tuple(patients))


@dataclass(frozen=True)
class Failure:
    """How a request failed: the status of its answer and its OperationOutcome's text."""

    status: int
    description: str = ""


def event_of(audit: Audit, touched: Touched, failure: Failure | None = None) -> Json:
    happened = Happened(
        audit.circumstances,
        failure.status if failure else 200,
        utc_now(),
        failure.description if failure else None,
        touched.resources,
        tuple(dict.fromkeys([*touched.patients, *patients_in(touched.bodies)])),
    )
    return audit_event(happened)


def record(tx: Tx, audit: Audit | None, touched: Touched, failure: Failure | None = None) -> None:
    """Store the event in the unit `tx` belongs to."""
    if audit is None:
        return
    tx.create(event_of(audit, touched, failure))
    tx.after_commit.append(audit.committed)


async def read(
    store: Store,
    audit: Audit | None,
    unit: Callable[[Tx], T],
    touched: Callable[[T], Touched],
    *,
    long: bool = False,
) -> T:
    """Run a read-only unit and store its event with it (a write unit, then). ``long``: the
    unit may take long (Store.arun)."""
    if audit is None:
        return await store.arun(unit, read_only=True, long=long)

    def audited(tx: Tx) -> T:
        result = unit(tx)
        record(tx, audit, touched(result))
        return result

    return await store.arun(audited, long=long)


async def record_alone(store: Store, audit: Audit, status: int, description: str = "") -> None:
    """The event of a request whose own work stored nothing (an error answer, a CDS Hooks
    call), in a unit of its own."""
    interaction = audit.circumstances.interaction
    target: tuple[str, ...] = ()
    if interaction.resource_type and interaction.resource_id:
        target = (version_reference(interaction.resource_type, interaction.resource_id, None),)
    failure = Failure(status, description)
    await store.arun(lambda tx: record(tx, audit, Touched(target), failure))
