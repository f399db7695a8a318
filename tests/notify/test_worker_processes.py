"""`careplan worker` as real processes: one killed with SIGKILL in the middle of a delivery
loses nothing (the event it was sending comes again, with its number), and two at once on
one PostgreSQL send every event exactly once, in order per subscription."""

import signal
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings
from tests.deploy.processes import CLI, cli_env
from tests.notify.conftest import FAST
from tests.notify.helpers import subscription
from tests.notify.receiver import Receiver
from tests.notify.test_delivery import care_plan, change, in_order_once
from tests.notify.test_subscription_api import subscribe, wait_status

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(database_url: str, receiver: Receiver) -> Settings:
    """The API only: the workers are the processes under test."""
    return Settings(
        database_url=database_url,
        db_connect_retries=0,
        delivery_worker=False,
        subscription_endpoints=receiver.prefix,
    )


@contextmanager
def worker(name: str, database_url: str, receiver: Receiver, tmp: Path) -> Iterator[Any]:
    log = (tmp / f"{name}.log").open("w")
    env = cli_env(
        database_url=database_url,
        subscription_endpoints=receiver.prefix,
        migrate_on_start=False,
        load_protocol=False,
        log_level="WARNING",
        **FAST,
    )
    process = subprocess.Popen(
        [*CLI, "worker"], env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.close()


def test_a_worker_killed_mid_delivery_loses_nothing(client, database_url, receiver, tmp_path):
    with worker("first", database_url, receiver, tmp_path) as first:
        sub_id = subscribe(client, subscription(receiver.url, "careplan-changed", timeout=5))
        wait_status(client, sub_id, "active", receiver)
        receiver.answer = ("slow", 2.0)  # the endpoint takes its time...
        plan_id = care_plan(client)
        change(client, plan_id, 4)
        receiver.wait(lambda: receiver.attempts >= 2)  # handshake, then event 1 in flight
        first.send_signal(signal.SIGKILL)  # ...and the worker dies waiting for its answer
        first.wait(10)
    receiver.answer = 200
    with worker("second", database_url, receiver, tmp_path):
        receiver.wait(lambda: in_order_once(receiver) == [1, 2, 3, 4, 5], timeout=90)
    # The receiver takes the killed worker's request in full 2 s after it came: wait for it.
    receiver.wait(lambda: receiver.event_numbers().count(1) == 2, timeout=10)
    numbers = receiver.event_numbers()
    assert sorted(set(numbers)) == [1, 2, 3, 4, 5]  # none lost, no gap
    assert numbers.count(1) == 2  # the one in flight came twice, with its number
    assert all(n.signed for n in receiver.received)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_workers_on_postgresql_send_each_event_once(client, database_url, receiver, tmp_path):
    receiver.answer = ("slow", 0.02)  # overlapping deliveries
    with (
        worker("a", database_url, receiver, tmp_path),
        worker("b", database_url, receiver, tmp_path),
    ):
        subs = [subscribe(client, subscription(receiver.url, "careplan-changed")) for _ in "abc"]
        for sub_id in subs:
            wait_status(client, sub_id, "active", receiver)
        plans = [care_plan(client) for _ in range(3)]
        for plan_id in plans:
            change(client, plan_id, 8)
        total = 3 * 9

        def per_subscription() -> dict[str, list[int]]:
            found: dict[str, list[int]] = defaultdict(list)
            for n in receiver.notifications():
                found[n.parameter("subscription")["reference"]] += n.event_numbers
            return found

        receiver.wait(lambda: sum(map(len, per_subscription().values())) >= 3 * total, 90)
    found = per_subscription()
    assert len(found) == 3
    for numbers in found.values():
        assert numbers == list(range(1, total + 1))  # each once, in order
    assert all(n.signed for n in receiver.received)
