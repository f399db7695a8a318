"""Build the OpenAPI examples from the protocol test builders: a real session, a hold-back,
and the three eligibility inputs $apply reads (the README and the $apply OperationDefinition
show the same three; tests/api/test_eligibility_docs.py checks they agree and work).

    python -m tests.openapi.make_examples     # rewrites service/api/openapi/examples.json

tests/openapi/test_schemas.py fails when the committed file and the builders disagree.
"""

import json
from pathlib import Path
from typing import Any

from tests.protocol import builders as b

TARGET = Path(__file__).resolve().parents[2] / "service" / "api" / "openapi" / "examples.json"


def _without_id(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "id"}


def build() -> dict[str, Any]:
    end = b.at(0)
    panel, members = b.session_resources([2, 3, 4, 5, 6], end)
    timeline = b.Timeline(observations=b.eligible_state(end))
    decision, outputs = timeline.submit([2, 3, 4, 5, 6], end)
    assert decision.code == "hold-back", decision.code
    return {
        "Patient": {
            "summary": "A patient",
            "value": {
                "resourceType": "Patient",
                "identifier": [{"system": "https://example.org/mrn", "value": "12345"}],
                "name": [{"family": "Doe", "given": ["Jane"]}],
                "gender": "female",
                "birthDate": "1970-01-01",
            },
        },
        "Observation": {
            "summary": "A Flexion in Lying session panel (5 repetitions, rising pain)",
            "value": _without_id(panel),
        },
        "ObservationRepetition": {
            "summary": "One repetition of a session: pain 0-10 (LOINC 72514-3)",
            "value": _without_id(members[0]),
        },
        # What $apply reads before a start: one example of each eligibility input.
        "RedFlagScreen": {
            "summary": "Eligibility input: a negative red-flag screen (valueBoolean false; a "
            "positive one is true, with one component per flag found)",
            "value": _without_id(b.red_flag_screen(b.at(-2))),
        },
        "EpisodePhase": {
            "summary": "Eligibility input: the episode phase (acute | recovering | persistent)",
            "value": _without_id(b.episode_phase(b.at(-20), "recovering")),
        },
        "DailyPain": {
            "summary": "Eligibility input: a daily pain score 0-10 (LOINC 72514-3, no "
            "repetition-index); valueInteger is accepted too",
            "value": _without_id(b.daily_pain(b.at(-1, 20), 0)),
        },
        "CarePlan": {
            "summary": "A patient's enrolment at level 1",
            "value": _without_id(b.care_plan()),
        },
        "SessionBundle": {
            "summary": "A session: the panel and its repetitions, linked by urn:uuid",
            "value": b.session_bundle([2, 3, 4, 5, 6], end),
        },
        "GuidanceResponse": {
            "summary": "A hold-back decision: pain rose with each repetition (rule R4)",
            "value": outputs.guidance_response,
        },
    }


def main() -> None:
    TARGET.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
