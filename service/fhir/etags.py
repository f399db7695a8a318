"""ETags and If-Match: one parser for REST headers and Bundle entries' ``request.ifMatch``."""

import re

from service.fhir.errors import fhir_error

# A version: ASCII digits that fit a 64-bit SQL integer, weak or strong.
_ETAG_RE = re.compile(r'^(?:W/)?"([0-9]{1,18})"$')


def etag(version: int) -> str:
    return f'W/"{version}"'


def parse_if_match(value: str, where: str | None = None) -> int:
    """The version an If-Match names (``W/"3"`` or ``"3"``); 400 for anything else."""
    match = _ETAG_RE.match(value.strip())
    if not match:
        raise fhir_error(
            400, "invalid", f'Malformed If-Match {value[:40]!r}; expected W/"<version>"', where
        )
    return int(match.group(1))
