"""The ``jti`` values of client assertions already used, so that an assertion works once.

A value must be remembered until the assertion it came from has expired; after that the
assertion is refused for its ``exp`` anyway, so the value may be forgotten.
"""

import threading
from typing import Protocol


class JtiStore(Protocol):
    def add_if_absent(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Records (client_id, jti) until ``expires_at`` and answers True, or answers False
        when it is already recorded and not expired. Must be atomic: of two concurrent calls
        with the same pair, one gets True."""
        ...


class InMemoryJtiStore:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def add_if_absent(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        with self._lock:
            self._forget_expired(now)
            if (client_id, jti) in self._seen:
                return False
            self._seen[(client_id, jti)] = expires_at
            return True

    def __len__(self) -> int:
        return len(self._seen)

    def _forget_expired(self, now: float) -> None:
        for pair in [pair for pair, until in self._seen.items() if until <= now]:
            del self._seen[pair]
