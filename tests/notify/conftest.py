"""Fixtures of the subscription tests: a real receiver on loopback, and the service (with its
delivery worker running in-process) allowed to call it, retrying within fractions of a second."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.main import create_app
from service.settings import Settings
from tests.conftest import FhirClient, authorize
from tests.notify.helpers import SECRET
from tests.notify.receiver import Receiver
from tests.support.r4_validator import R4Validator

FAST = {
    "delivery_backoff_seconds": 0.05,
    "delivery_backoff_max_seconds": 0.2,
    "delivery_give_up_seconds": 60.0,
    "delivery_poll_seconds": 0.05,
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver(SECRET).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def settings(database_url: str, receiver: Receiver) -> Settings:
    return Settings(
        database_url=database_url,
        db_connect_retries=0,
        subscription_endpoints=receiver.prefix,
        **FAST,
    )


@pytest.fixture
def start_service(
    database_url: str, receiver: Receiver, r4_validator: R4Validator | None
) -> Iterator[Callable[..., FhirClient]]:
    """Start the service (again) on this test's database with other settings: a restart."""
    started: list[FhirClient] = []

    def start(**overrides: Any) -> FhirClient:
        values: dict[str, Any] = {
            "database_url": database_url,
            "db_connect_retries": 0,
            "subscription_endpoints": receiver.prefix,
            **FAST,
        }
        client = FhirClient(create_app(Settings(**(values | overrides))))
        client.__enter__()
        authorize(client)
        client.validator = r4_validator
        client.headers["content-type"] = "application/fhir+json"
        started.append(client)
        return client

    try:
        yield start
    finally:
        for client in started:
            stop(client)


def stop(client: FhirClient) -> None:
    """Shut a started service down (its worker with it); safe to call twice."""
    if getattr(client, "stopped", False):
        return
    client.stopped = True  # type: ignore[attr-defined]
    client.__exit__(None, None, None)
