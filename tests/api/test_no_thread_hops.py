"""Every FHIR route runs on the event loop, dependencies included.

FastAPI runs a plain `def` endpoint or dependency in its thread pool: a thread round trip on
every request (the 406 check `negotiate` was one, 3-7% of a session submission's throughput,
bench/README.md). Store work is dispatched by `Store.arun`, not by FastAPI.
"""

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant

from service.api.capability import api_routes


def _calls(dependant: Dependant) -> Iterator[Any]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def test_fhir_routes_and_their_dependencies_are_coroutines(app: Any) -> None:
    routes = [r for r in api_routes(app.routes) if r.path.startswith("/fhir")]
    assert len(routes) > 20  # the whole REST surface, not an empty list
    sync = {
        f"{sorted(route.methods)} {route.path}: {call.__qualname__}"
        for route in routes
        for call in _calls(route.dependant)
        if not inspect.iscoroutinefunction(call)
    }
    assert sync == set()
