"""The resource server at the door of every /fhir route: who is calling, and whether the
route's interaction or operation is within the token's scopes.

``guard(*needs)`` is a route dependency. It stores the caller on ``request.state.access`` (the
verified token's AccessContext, or None when the service runs open) for the handler to hand to
its use case, and refuses with 401 (no or bad token) or 403 (scopes lack a need) before the
handler reads the body. Routes whose needs depend on the body (batch, transaction, system
history) pass none here; their use cases check.
"""

from collections.abc import Awaitable, Callable

from fastapi import Request

from service.api.http import base_url
from service.auth.permissions import InsufficientScope, Need
from service.usecases.access import Caller
from service.usecases.authorization import Authorization


def authorization_of(request: Request) -> Authorization:
    authorization: Authorization = request.app.state.authorization
    return authorization


async def authenticate(request: Request) -> Caller:
    """The caller of a request (raises InvalidToken), kept on ``request.state.access``."""
    authorization = authorization_of(request)
    server = request.scope.get("server")
    if authorization.policy.is_open(server[0] if server else None):
        caller: Caller = None
    else:
        caller = await authorization.authenticate(
            request.headers.get("authorization"), base_url(request)
        )
    request.state.access = caller
    return caller


def guard(*needs: Need) -> Callable[[Request], Awaitable[None]]:
    """A dependency: authenticate, then 403 unless the token allows every need."""

    async def check(request: Request) -> None:
        caller = await authenticate(request)
        if caller is not None and needs:
            unmet = caller.unmet(needs)
            if unmet:
                raise InsufficientScope(unmet)

    check.__qualname__ = f"guard({', '.join(str(need) for need in needs)})"
    return check


def caller_of(request: Request) -> Caller:
    """The caller ``guard`` stored (routes without a guard have none: that is a bug)."""
    caller: Caller = request.state.access
    return caller
