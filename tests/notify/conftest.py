"""Fixtures of the subscription tests: a real receiver on loopback, and the service (with its
delivery worker running in-process) allowed to call it, retrying within fractions of a second."""

from collections.abc import Iterator

import pytest

from service.settings import Settings
from tests.notify.helpers import SECRET
from tests.notify.receiver import Receiver

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
