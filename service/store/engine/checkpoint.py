"""SQLite WAL checkpoints in a thread of their own, off the request path.

A durable COMMIT appends the pages it changed to the WAL; a checkpoint copies them back into the
database file and fsyncs it. SQLite runs one inside whichever COMMIT pushes the WAL past
`wal_autocheckpoint` pages, so about every seventh submission paid ~4-5 ms more (the 1-connection
p99). Here the store nudges this thread after a commit, at most every 0.1 s, and it checkpoints
on a connection of its own while the event loop goes on: SQLite releases the GIL while it
copies and syncs, and a PASSIVE checkpoint never blocks a writer. Measured in bench/README.md.

The writers' own `wal_autocheckpoint` (db.py) stays as the backstop: it checkpoints inline if
this thread falls behind, and in processes without one (the CLI).
"""

import contextlib
import logging
import math
import sqlite3
import threading
import time

logger = logging.getLogger("careplan")


class WalCheckpointer:
    def __init__(self, path: str, interval: float) -> None:
        self.path = path
        # Nudged right after a COMMIT, so the copy overlaps the next requests' Python; at most
        # once per interval, since every checkpoint ends in an fsync of the database file.
        self.interval = interval
        self._last_nudge = -math.inf
        self.last: tuple[int, int, int] | None = None  # (busy, WAL frames, frames copied)
        self._changed = threading.Condition()
        self._requested = 0
        self._served = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="wal-checkpoint", daemon=True)
        self._thread.start()

    @property
    def checkpoints(self) -> int:
        return self._served

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def nudge(self) -> None:
        now = time.monotonic()
        if now - self._last_nudge < self.interval:
            return
        self._last_nudge = now
        with self._changed:
            self._requested += 1
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every nudge so far has been served (tests)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._served == self._requested, timeout)

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(lambda: self._stopping or self._served < self._requested)
                    if self._stopping:
                        return
                    target = self._requested
                self._checkpoint(connection)
                with self._changed:
                    self._served = target
                    self._changed.notify_all()
        finally:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            # The writers' backstop checkpoints instead; the next nudge tries again.
            logger.warning("background WAL checkpoint failed", exc_info=True)
            return
        self.last = (int(row[0]), int(row[1]), int(row[2]))
