"""A large body is parsed, checked and stored off the event loop's thread (its cost grows with
its size and would hold up every other request); a small one stays on it, where it costs least.
The app is driven directly (ASGI), so the event loop runs on the test's thread."""

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from starlette.requests import Request

from service.api.http import INLINE_BODY_BYTES, checked_body
from service.main import create_app
from service.settings import Settings
from service.store.db import create_db_engine
from service.store.runner import Store
from service.usecases.authorization import Authorization, AuthPolicy


@pytest.fixture
def traced_app(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[Any, list[int]]]:
    """The app on a SQLite store, and the threads its statements ran on (SQLite's trace
    callback runs on the executing thread)."""
    path = tmp_path / "careplan.db"
    shutil.copy(sqlite_template, path)
    engine = create_db_engine(f"sqlite:///{path}")
    threads: list[int] = []

    @sa.event.listens_for(engine, "connect")
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(lambda _sql: threads.append(threading.get_ident()))

    app = create_app(Settings(database_url=f"sqlite:///{path}", load_protocol=False))
    app.state.store = Store(engine)
    # Where the store's work runs is the point here, not tokens: the app runs open.
    open_policy = AuthPolicy("off", "127.0.0.1")
    app.state.authorization = Authorization(engine, open_policy, issuers=[], token_lifetime=300)
    yield app, threads
    engine.dispose()


def _scope(path: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/fhir+json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }


def _post(app: Any, path: str, resource: dict[str, Any]) -> int:
    """POST through the ASGI app on this thread's event loop; the response status."""
    body = orjson.dumps(resource)
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(_scope(path, body), receive, send))
    return int(sent[0]["status"])


def _patient(names: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": f"Large{k}"} for k in range(names)]}


def test_a_large_create_is_stored_off_the_event_loop_and_a_small_one_on_it(
    traced_app: tuple[Any, list[int]],
) -> None:
    app, threads = traced_app
    small, large = _patient(1), _patient(5000)
    assert len(orjson.dumps(small)) < INLINE_BODY_BYTES < len(orjson.dumps(large))
    assert _post(app, "/fhir/Patient", small) == 201
    assert threads and set(threads) == {threading.get_ident()}
    del threads[:]
    assert _post(app, "/fhir/Patient", large) == 201
    assert threads and threading.get_ident() not in threads


def test_a_large_body_is_parsed_and_checked_off_the_event_loop() -> None:
    app = create_app(Settings(database_url="sqlite://"))
    checked_on: list[int] = []

    def check(value: Any) -> Any:
        checked_on.append(threading.get_ident())
        return value

    async def main(body: bytes) -> tuple[Any, bool]:
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        scope = _scope("/fhir/Patient", body) | {"app": app}
        return await checked_body(Request(scope, receive), check)

    small, large = _patient(1), _patient(5000)
    assert asyncio.run(main(orjson.dumps(small))) == (small, False)
    assert asyncio.run(main(orjson.dumps(large))) == (large, True)
    loop_thread = threading.get_ident()
    assert checked_on[0] == loop_thread and checked_on[1] != loop_thread
