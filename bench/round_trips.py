"""Round trips to PostgreSQL per session submission, counted by a TCP proxy.

    .venv/bin/python bench/round_trips.py [--postgres URL]

The proxy sits between the store and the server and counts turns: each time the server
answers after the client has sent something. That is one round trip, however many
statements went in it (a pipeline sends many). The count includes BEGIN and COMMIT (and, until
the seventh session, the pool's pre-ping: 14 then, 13 since). On loopback a round trip costs
~0.1 ms; across a network it costs the network's latency, so this number is what a remote
database multiplies.
"""

import argparse
import asyncio
import socket
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.decision_time import enrol, fill, session_at  # noqa: E402
from bench.run import drop_schema, postgres_schema  # noqa: E402
from service import sessions  # noqa: E402
from service.knowledge import load_definitions, shipped_definitions  # noqa: E402
from service.store import migrations  # noqa: E402
from service.store.db import create_db_engine  # noqa: E402
from service.store.repository import Store  # noqa: E402


class TurnCounter:
    """A TCP proxy to `target` that counts server answers following client sends."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.turns = 0
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    def start(self) -> None:
        ready = threading.Event()
        threading.Thread(target=asyncio.run, args=(self._serve(ready),), daemon=True).start()
        ready.wait()

    async def _serve(self, ready: threading.Event) -> None:
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        ready.set()
        await server.serve_forever()

    async def _connection(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await asyncio.open_connection(*self.target)
        last = {"sent_by": ""}
        await asyncio.gather(
            self._pipe(client_in, server_out, "client", last),
            self._pipe(server_in, client_out, "server", last),
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        side: str,
        last: dict[str, str],
    ) -> None:
        while data := await reader.read(65536):
            if side == "server" and last["sent_by"] == "client":
                self.turns += 1
            last["sent_by"] = side
            writer.write(data)
            await writer.drain()
        writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sessions", type=int, default=10, help="stored before counting")
    args = parser.parse_args()
    direct = make_url(args.postgres)
    counter = TurnCounter((direct.host or "127.0.0.1", direct.port or 5432))
    counter.start()
    proxied = direct.set(host="127.0.0.1", port=counter.port).render_as_string(hide_password=False)
    url = postgres_schema(proxied)
    engine = create_db_engine(url)
    migrations.upgrade(engine)
    store = Store(engine)
    load_definitions(store, shipped_definitions())
    plan = enrol(store, "p1")
    fill(store, plan, "p1", args.sessions)
    counts = []
    for k in range(args.sessions, args.sessions + 3):
        bundle = session_at(plan, "p1", k)
        counter.turns = 0
        store.run(lambda tx, bd=bundle: sessions.submit_session(tx, plan, bd, datetime.now(UTC)))
        counts.append(counter.turns)
    print(f"round trips per session submission: {counts}")
    engine.dispose()
    drop_schema(proxied, url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
