"""Extension points the protocol and delivery layers plug into, run inside the write transaction."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.store.repository import Stored, Tx

# Raises FhirError (422) when a resource breaks a business rule; may read through the Tx.
Validator = Callable[[Tx, dict[str, Any]], None]
# Sees every resource a request wrote, before commit; may write more through the Tx. The flag
# says the server has just assigned their ids (a plain POST): nothing stored can point at them.
AfterWrite = Callable[[Tx, list[Stored], bool], None]


@dataclass
class Hooks:
    validators: dict[str, list[Validator]] = field(default_factory=dict)
    after_write: list[AfterWrite] = field(default_factory=list)

    def validate(self, tx: Tx, body: dict[str, Any]) -> None:
        for check in self.validators.get(body["resourceType"], []):
            check(tx, body)

    def written(self, tx: Tx, stored: list[Stored], fresh_ids: bool = False) -> None:
        for hook in self.after_write:
            hook(tx, stored, fresh_ids)
