"""Reads from the EHR's FHIR server (a CDS Hooks call's `fhirServer`) when the prefetch lacks
what a card needs.

Only servers on the allow-list (``CAREPLAN_CDS_FHIR_SERVERS``) are called, so a caller
cannot turn this service into a client of any URL it names; with the call's own access token
(`fhirAuthorization`), never redirected, bounded in size, and all reads of one call together
bounded in time. Failures are ``EhrUnavailable`` with a short fixed reason: never the token,
the query or what the server answered.
"""

import asyncio
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

Json = dict[str, Any]
DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class EhrConfigError(ValueError):
    """``CAREPLAN_CDS_FHIR_SERVERS`` cannot be used; the message says why."""


class EhrUnavailable(Exception):
    """What the EHR's FHIR server was asked for could not be had; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_fhir_servers(text: str) -> tuple[str, ...]:
    """The allowed base URLs of a comma-separated list: https, or http to a loopback host
    (the EHR's token would otherwise travel in the clear). Raises EhrConfigError."""
    servers = []
    for item in text.split(","):
        url = item.strip().rstrip("/")
        if not url:
            continue
        parts = urlsplit(url)
        host = parts.hostname or ""
        if (parts.scheme == "https" and host) or (parts.scheme == "http" and is_loopback(host)):
            servers.append(url)
        else:
            raise EhrConfigError(
                f"CDS FHIR servers: {url!r} must be https (http only to a loopback address)"
            )
    return tuple(servers)


class EhrReader:
    def __init__(
        self,
        allowed: Sequence[str],
        timeout: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._allowed = frozenset(url.rstrip("/") for url in allowed)
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._client = client or httpx.AsyncClient(
            follow_redirects=False, timeout=httpx.Timeout(timeout)
        )

    def allows(self, server: str) -> bool:
        return server.rstrip("/") in self._allowed

    async def aclose(self) -> None:
        await self._client.aclose()

    async def read_all(
        self,
        server: str,
        token: str | None,
        wanted: Mapping[str, tuple[str, Mapping[str, str]]],
    ) -> dict[str, Json | EhrUnavailable]:
        """key -> (path under the server, query parameters), read at once; each answer is
        the resource read, or EhrUnavailable. All of them together take at most the timeout."""
        if not wanted:
            return {}
        if not self.allows(server):
            refused = EhrUnavailable("fhirServer is not among the allowed FHIR servers")
            return {key: refused for key in wanted}
        base = server.rstrip("/")
        tasks = {
            key: asyncio.ensure_future(self._read(f"{base}/{path}", params, token))
            for key, (path, params) in wanted.items()
        }
        _, pending = await asyncio.wait(tasks.values(), timeout=self._timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        answers: dict[str, Json | EhrUnavailable] = {}
        for key, task in tasks.items():
            if task in pending:
                answers[key] = EhrUnavailable("the EHR's FHIR server did not answer in time")
                continue
            error = task.exception()
            if error is None:
                answers[key] = task.result()
            elif isinstance(error, EhrUnavailable):
                answers[key] = error
            else:
                answers[key] = EhrUnavailable("the EHR's FHIR server could not be read")
        return answers

    async def _read(self, url: str, params: Mapping[str, str], token: str | None) -> Json:
        headers = {"Accept": "application/fhir+json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = bytearray()
        try:
            async with self._client.stream("GET", url, params=params, headers=headers) as answer:
                if answer.status_code != 200:
                    raise EhrUnavailable(
                        f"the EHR's FHIR server answered HTTP {answer.status_code}"
                    )
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise EhrUnavailable("the EHR's FHIR server answered too much")
        except httpx.HTTPError as error:
            raise EhrUnavailable(
                f"the EHR's FHIR server could not be reached ({type(error).__name__})"
            ) from None
        try:
            resource = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise EhrUnavailable("the EHR's FHIR server answered no JSON") from None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise EhrUnavailable("the EHR's FHIR server answered no FHIR resource")
        return resource


def is_loopback(host: str) -> bool:
    """localhost or a loopback IP address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
