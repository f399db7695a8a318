"""Start-up wiring that crosses layers: the protocol's own search parameter, handed to fhir/.

fhir/ knows HL7's search parameters only; the protocol's codes live in protocol/. Run from
``service/__init__.py``, so every entry point (the app, the CLI, alembic, a test) indexes and
searches with the same parameters: an indexer without this one would write rows that a
decision's record window cannot find.
"""

from service.fhir.search_params import SearchParam, register
from service.protocol.codes import CANONICAL_BASE, CAREPLAN_CS, REPETITION_INDEX, SESSION_CODE

# A decision's record window reads it. Sessions are read through their decisions, so leaving
# their Observations out here (not at query time) keeps the window as small for a patient with
# four sessions a day as for a new one.
NON_SESSION_DATE = SearchParam(
    "non-session-date",
    "date",
    ("effectiveDateTime", "effectivePeriod", "effectiveInstant"),
    "Clinically relevant time of an Observation that is neither a flexion-session "
    "panel nor one of its repetitions",
    # Published as a SearchParameter (protocol/definitions/), loaded at start-up.
    definition=f"{CANONICAL_BASE}/SearchParameter/Observation-non-session-date",
    unless=(
        ("code", CAREPLAN_CS, SESSION_CODE),
        ("component-code", CAREPLAN_CS, REPETITION_INDEX),
    ),
)


def install_protocol_search_params() -> None:
    register("Observation", NON_SESSION_DATE)
