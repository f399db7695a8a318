"""The eligibility inputs $apply asks for are documented where users read (README, the $apply
OperationDefinition, the OpenAPI document), the same three examples everywhere, and those
examples, stored for a patient, make $apply answer eligible."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.api.openapi.examples import ELIGIBILITY_INPUTS, example
from service.protocol.definitions import shipped_definition
from tests.api.scenario import PLAN, put
from tests.protocol import builders as b

Json = dict[str, Any]
README = Path(__file__).resolve().parents[2] / "README.md"
NAMES = [name for name, _, _ in ELIGIBILITY_INPUTS]
DOCUMENTED = [example(example_name)["value"] for _, example_name, _ in ELIGIBILITY_INPUTS]


def json_blocks(markdown: str) -> list[Json]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", markdown, re.S)]


def test_the_readme_shows_each_input_with_the_documented_example() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Eligibility inputs", 1)[1].split("\n## ", 1)[0]
    assert json_blocks(section) == DOCUMENTED
    for name in NAMES:
        assert f"**{name}**" in section


def test_the_apply_operation_definition_shows_them() -> None:
    definition = shipped_definition("OperationDefinition", "PlanDefinition-apply")
    assert json_blocks(definition["comment"]) == DOCUMENTED
    subject = next(p for p in definition["parameter"] if p["name"] == "subject")
    assert all(name in subject["documentation"] for name in ("red-flag-screen", "episode-phase"))


def test_the_openapi_document_shows_them(client) -> None:
    document = client.get("/openapi.json").json()
    apply = document["paths"]["/fhir/PlanDefinition/{id}/$apply"]["get"]
    assert json_blocks(apply["description"]) == DOCUMENTED
    create = document["paths"]["/fhir/Observation"]["post"]["requestBody"]["content"]
    examples = create["application/fhir+json"]["examples"]
    assert [examples[name]["value"] for _, name, _ in ELIGIBILITY_INPUTS] == DOCUMENTED


def _dated(observation: Json, moment: datetime) -> Json:
    """A documented example as sent today: only its time changes."""
    return {**observation, "effectiveDateTime": b.iso(moment)}


def _apply(client) -> Json:
    applied = client.get(f"{PLAN}/$apply?subject=Patient/{b.PATIENT_ID}")
    assert applied.status_code == 200, applied.text
    return dict(applied.json())


def _reason(care_plan: Json) -> str:
    detail = care_plan["activity"][0]["detail"]
    return str(detail.get("statusReason", {}).get("text", ""))


def test_the_documented_examples_make_apply_eligible(client) -> None:
    red_flags, phase, pain = DOCUMENTED
    assert red_flags["subject"] == {"reference": f"Patient/{b.PATIENT_ID}"}
    put(client, b.patient())
    now = datetime.now(UTC)
    assert _reason(_apply(client)).endswith(f"{', '.join(NAMES)}.")
    for observation in (_dated(red_flags, now - timedelta(days=2)), _dated(phase, now)):
        created = client.post("/fhir/Observation", json=observation)
        assert created.status_code == 201, created.text
    assert _reason(_apply(client)).endswith("daily-pain.")
    # One score a day, as the documentation says, for the last 14 days.
    for days in range(1, 15):
        daily = _dated(pain, now - timedelta(days=days))
        created = client.post("/fhir/Observation", json=daily)
        assert created.status_code == 201, created.text
    care_plan = _apply(client)
    assert care_plan["status"] == "active", _reason(care_plan)
    assert {a["detail"]["status"] for a in care_plan["activity"]} == {"scheduled"}
