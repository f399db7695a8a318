"""Characters a FHIR string may hold: R4 strings "SHOULD not contain Unicode character points
below 32, except for u0009 (horizontal tab), u000D (carriage return) and u000A (line feed)".

The service refuses them (400) in bodies and search values alike, before anything reaches a
database: PostgreSQL cannot store a NUL in text or JSONB at all, SQLite would keep it.
"""

import re

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def control_character(text: str) -> str | None:
    """The first control character in `text` as U+XXXX, or None when there is none."""
    found = _CONTROL.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"
