"""The token check of usecases/authorization.py with a clock the test moves: a verified token
is remembered for a few seconds, never past its expiry, and a token of a removed client is
forgotten at once."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from service.auth.clients import new_client
from service.auth.verify import InvalidToken, TrustedIssuer
from service.store.db import create_db_engine
from service.usecases.authorization import Authorization, AuthPolicy, trusted_issuers
from tests.support.tokens import (
    EXTERNAL_ISSUER,
    client_assertion,
    client_key,
    external_issuers_setting,
    external_token,
    service_key,
)

BASE = "https://careplan.example.org/fhir"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def _authorization(engine: Engine, clock: Clock) -> Authorization:
    issuers: list[TrustedIssuer] = trusted_issuers(external_issuers_setting(BASE), BASE)
    return Authorization(
        engine, AuthPolicy("required", "0.0.0.0"), issuers=issuers, token_lifetime=300, clock=clock
    )


def test_a_remembered_token_still_expires(engine: Engine) -> None:
    clock = Clock(2_000_000_000.0)
    authorization = _authorization(engine, clock)
    now = int(clock.now)
    token = external_token("system/*.rs", BASE, iat=now, exp=now + 2)
    header = f"Bearer {token}"
    assert asyncio.run(authorization.authenticate(header, BASE)).issuer == EXTERNAL_ISSUER
    clock.now += 1
    asyncio.run(authorization.authenticate(header, BASE))  # remembered, still valid
    clock.now += 62  # past exp plus the 60 s skew
    with pytest.raises(InvalidToken, match="expired"):
        asyncio.run(authorization.authenticate(header, BASE))


def test_a_removed_clients_remembered_token_is_refused_at_once(engine: Engine) -> None:
    clock = Clock(datetime.now(UTC).timestamp())
    authorization = _authorization(engine, clock)
    authorization.key_store.save(service_key())
    public = client_key().as_dict(private=False)
    authorization.clients.add(
        new_client("ehr", "system/*.rs", datetime.now(UTC), jwks={"keys": [public]})
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion("ehr", f"{BASE}/auth/token"),
        "scope": "system/*.rs",
    }
    answer = asyncio.run(authorization.issue_token(form, BASE))
    header = f"Bearer {answer['access_token']}"
    assert asyncio.run(authorization.authenticate(header, BASE)).client_id == "ehr"
    assert authorization.clients.remove("ehr")
    with pytest.raises(InvalidToken, match="no longer registered"):
        asyncio.run(authorization.authenticate(header, BASE))
