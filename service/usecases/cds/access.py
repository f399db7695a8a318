"""Who may call the CDS Hooks services, and how the services reach the EHR: built once at
start-up from the settings.

The EHR's JWT is required whenever the FHIR API requires tokens (``CAREPLAN_AUTH``, its
AuthPolicy): an open decision service on the network would show any caller any patient's plan.
"""

import logging
from dataclasses import dataclass

import anyio.from_thread
import anyio.to_thread

from service.auth.cds_clients import (
    CdsCaller,
    CdsClientConfigError,
    CdsJwtVerifier,
    parse_cds_clients,
)
from service.store.jti import first_use
from service.store.repository import Tx
from service.store.runner import Store
from service.usecases.authorization import AuthPolicy
from service.usecases.cds.ehr import EhrConfigError, EhrReader, parse_fhir_servers

logger = logging.getLogger("careplan.cds")


class CdsConfigError(ValueError):
    """The CDS Hooks settings cannot be used; the message says which and why."""


@dataclass(frozen=True)
class CdsAccess:
    verifier: CdsJwtVerifier
    policy: AuthPolicy
    ehr: EhrReader
    trusted_systems: frozenset[str]

    async def caller(
        self, authorization: str | None, audience: str, local_address: str | None
    ) -> CdsCaller | None:
        """The EHR calling (raises auth.verify.InvalidToken), or None when the service runs
        open for this request (``local_address``: the address it arrived on). In a worker
        thread: a JWKS fetch or the jti write may block."""
        if self.policy.is_open(local_address):
            return None
        return await anyio.to_thread.run_sync(self.verifier.verify, authorization, audience)

    async def close(self) -> None:
        await self.ehr.aclose()


class _StoreJtiStore:
    """``JtiStore`` for the verifier in its worker thread: the write goes back to the event
    loop's store, so on SQLite it shares a group commit (one fsync) with the writes arriving
    alongside, and never waits on a lock the loop holds."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add_if_absent(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        def unit(tx: Tx) -> bool:
            return first_use(tx, client_id, jti, expires_at, now)

        return anyio.from_thread.run(self._store.arun, unit)


def open_cds(
    store: Store,
    *,
    clients: str,
    policy: AuthPolicy,
    fhir_servers: str,
    timeout: float,
    trusted_systems: str,
) -> CdsAccess:
    try:
        configured = parse_cds_clients(clients)
        allowed = parse_fhir_servers(fhir_servers)
    except (CdsClientConfigError, EhrConfigError) as error:
        raise CdsConfigError(str(error)) from None
    if not configured and not policy.open_at_start:
        logger.warning(
            "no CDS clients configured (CAREPLAN_CDS_CLIENTS): every CDS call that needs the "
            "EHR's JWT is refused"
        )
    verifier = CdsJwtVerifier(configured, _StoreJtiStore(store))
    systems = frozenset(s.strip() for s in trusted_systems.split(",") if s.strip())
    return CdsAccess(verifier, policy, EhrReader(allowed, timeout), systems)
