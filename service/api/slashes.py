"""The base URL with or without a trailing slash: ``POST /fhir/`` is ``POST /fhir``.

Many FHIR clients are configured with ``.../fhir/`` and join paths onto it. Starlette's
answer to a path that matches only without its slash is a 307 redirect, which a client that
does not follow redirects with a body (a transaction) turns into a failure. This pure ASGI
middleware drops trailing slashes before routing instead (the app's root ``/`` stays), and the
app is built with ``redirect_slashes=False``.
"""

from starlette.types import ASGIApp, Receive, Scope, Send


class StripTrailingSlash:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            stripped = path.rstrip("/")
            if stripped and stripped != scope.get("root_path", "").rstrip("/"):
                # In place, not a copy: the router records the matched route on this scope,
                # where ObservabilityMiddleware reads its template for metrics and logs.
                scope["path"] = stripped
                raw_path = scope.get("raw_path")
                if isinstance(raw_path, bytes):
                    scope["raw_path"] = raw_path.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)
