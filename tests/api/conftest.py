"""Fixtures for the HTTP tests: a live uvicorn server on a free port."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from service.main import create_app
from service.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: Any, port: int, **config: Any) -> Iterator[None]:
    """``app`` under uvicorn in a thread on ``port`` until the block ends."""
    options = {"log_level": "warning", **config}
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", **options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The service under uvicorn in a thread; yields its FHIR base URL.

    On SQLite it starts on a fresh, empty file (start-up migrates it); on PostgreSQL on the
    emptied test schema.
    """
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'fresh' / 'live.db'}"
    port = free_port()
    settings = Settings(database_url=database_url, db_connect_retries=0, port=port)
    with serving(create_app(settings), port):
        yield f"http://127.0.0.1:{port}/fhir"
