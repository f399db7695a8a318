"""Who may call the CDS Hooks services, and how the services reach the EHR: built once at
start-up from the settings.

The EHR's JWT is required unless the service runs open on a loopback address (``auto``), or
when told (``true``); ``false`` is refused on any other address, as an open decision service
on the network would show any caller any patient's plan. When tokens become required by
``CAREPLAN_AUTH`` (the FHIR API's authorization), this follows it.
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
from service.usecases.cds.ehr import EhrConfigError, EhrReader, is_loopback, parse_fhir_servers

logger = logging.getLogger("careplan.cds")


class CdsConfigError(ValueError):
    """The CDS Hooks settings cannot be used; the message says which and why."""


@dataclass(frozen=True)
class CdsAccess:
    verifier: CdsJwtVerifier | None  # None: no JWT required
    ehr: EhrReader
    trusted_systems: frozenset[str]

    async def caller(self, authorization: str | None, audience: str) -> CdsCaller | None:
        """The EHR calling (raises auth.verify.InvalidToken), or None when the services are
        open. In a worker thread: a JWKS fetch or the jti write may block."""
        if self.verifier is None:
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


def jwt_required(require: str, host: str) -> bool:
    if require == "true":
        return True
    loopback = is_loopback(host)
    if require == "false" and not loopback:
        raise CdsConfigError(
            f"CAREPLAN_CDS_REQUIRE_JWT=false is refused on {host}: only a service bound to a "
            "loopback address may take CDS Hooks calls without the EHR's JWT"
        )
    return not loopback


def open_cds(
    store: Store,
    *,
    clients: str,
    require: str,
    host: str,
    fhir_servers: str,
    timeout: float,
    trusted_systems: str,
) -> CdsAccess:
    try:
        configured = parse_cds_clients(clients)
        allowed = parse_fhir_servers(fhir_servers)
    except (CdsClientConfigError, EhrConfigError) as error:
        raise CdsConfigError(str(error)) from None
    required = jwt_required(require, host)
    if not required:
        logger.warning(
            "CDS Hooks services are open: no EHR JWT is required on the loopback address %s",
            host,
        )
    elif not configured:
        logger.warning(
            "no CDS clients configured (CAREPLAN_CDS_CLIENTS): every CDS call is refused"
        )
    verifier = CdsJwtVerifier(configured, _StoreJtiStore(store)) if required else None
    systems = frozenset(s.strip() for s in trusted_systems.split(",") if s.strip())
    return CdsAccess(verifier, EhrReader(allowed, timeout), systems)
