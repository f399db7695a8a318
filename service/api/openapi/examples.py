"""OpenAPI examples taken from the protocol (tests/openapi/make_examples.py builds examples.json
from the protocol test builders: a real session and a hold-back decision)."""

import json
from functools import cache
from pathlib import Path
from typing import Any

_FILE = Path(__file__).with_name("examples.json")

# Which examples document the create/update body of a type.
_REQUEST: dict[str, tuple[str, ...]] = {
    "Patient": ("Patient",),
    "Observation": (
        "Observation",
        "ObservationRepetition",
        "RedFlagScreen",
        "EpisodePhase",
        "DailyPain",
    ),
    "CarePlan": ("CarePlan",),
}


@cache
def _all() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = json.loads(_FILE.read_text(encoding="utf-8"))
    return found


def example(name: str) -> dict[str, Any]:
    """One example object ({"summary", "value"}) by name, e.g. "SessionBundle"."""
    copy: dict[str, Any] = json.loads(json.dumps(_all()[name]))  # a deep copy
    return copy


def request_examples(resource_type: str) -> dict[str, Any] | None:
    names = _REQUEST.get(resource_type)
    return {name: example(name) for name in names} if names else None


def response_examples(resource_type: str) -> dict[str, Any] | None:
    if resource_type == "GuidanceResponse":
        return {"holdBack": example("GuidanceResponse")}
    return None


# What $apply reads before a start, named as its "More information is needed before a start:
# ..." names them: (input, example, what it is). The README and the $apply
# OperationDefinition say the same (tests/api/test_eligibility_docs.py).
ELIGIBILITY_INPUTS: tuple[tuple[str, str, str], ...] = (
    (
        "red-flag-screen",
        "RedFlagScreen",
        "The latest red-flag screen of the last 30 days (PlanDefinition parameter "
        "red-flag-lookback-days): valueBoolean false is negative. A positive screen "
        "(valueBoolean true, with one component per flag found, e.g. code saddle-numbness "
        "valueBoolean true) stops the plan and asks for a clinician. A QuestionnaireResponse "
        "to the red-flag-screen Questionnaire counts too.",
    ),
    (
        "episode-phase",
        "EpisodePhase",
        "The latest episode phase: acute (sessions only under supervision), recovering or "
        "persistent.",
    ),
    (
        "daily-pain",
        "DailyPain",
        "Pain scores 0-10, one a day (LOINC 72514-3 with valueQuantity in UCUM {score} or "
        "valueInteger, and no repetition-index component). Criterion A starts the plan when "
        "the phase is not acute and at least 10 of the last 14 days have a score of 0; "
        "instead of daily pain, an extension-program Observation can meet criterion B.",
    ),
)


def eligibility_markdown() -> str:
    """The three inputs with their examples, as Markdown (the $apply description)."""
    lines = [
        "Before a start, $apply reads three inputs from the patient's stored Observations "
        "(`POST /fhir/Observation`). While one is missing, the CarePlan is a draft whose "
        'activities are `not-started` with the reason "More information is needed before a '
        'start: ..." naming what to send:',
        "",
    ]
    for name, example_name, what in ELIGIBILITY_INPUTS:
        lines += [f"**{name}**: {what}", "", "```json"]
        lines += [json.dumps(example(example_name)["value"], indent=2), "```", ""]
    return "\n".join(lines).rstrip()
