"""The FHIR resources of a decision are valid R4, deterministic and name the plan version."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from service.protocol.decide import Session, decide
from service.protocol.outputs import build_outputs
from service.protocol.parameters import read_params
from service.protocol.texts import DISCLAIMER
from tests.protocol.builders import (
    care_plan,
    eligible_state,
    plan_definition,
    record,
    red_flag_screen,
    session,
    session_bundle,
)
from tests.protocol.helpers import CLOCK

CASES = {
    "continue": ([3, 2, 1, 1, 0], {}),
    "hold-back": ([1, 2, 3, 4, 8], {"extension_followed": False, "head_raised": True}),
    "stop-and-refer": ([2, 1, 1, 0, 0], {"location_end": "below-knee"}),
    "data-required": ([1, None], {}),
}


def _outputs(reps: list[int | None], **kwargs: object):  # type: ignore[no-untyped-def]
    pd = plan_definition()
    d = decide(pd, record(eligible_state(CLOCK)), session(reps, CLOCK, **kwargs), CLOCK)
    return d, build_outputs(d, read_params(pd), care_plan())


def _validate(resource: dict) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_are_valid_r4(case: str) -> None:
    reps, kwargs = CASES[case]
    d, out = _outputs(reps, **kwargs)
    assert d.code == case
    for resource in [out.guidance_response, out.care_plan, *out.created]:
        _validate(resource)
    gr = out.guidance_response
    assert gr["status"] == ("data-required" if case == "data-required" else "success")
    assert gr["moduleCanonical"] == d.plan_canonical
    assert gr["reasonCode"][0]["coding"][0]["code"] == case
    assert out.communication_request["payload"][0]["contentString"].endswith(DISCLAIMER)
    targets = {t["reference"] for t in out.provenance["target"]}
    assert f"GuidanceResponse/{gr['id']}" in targets
    assert any(e["what"].get("display") == d.plan_canonical for e in out.provenance["entity"])


def test_hold_back_outputs() -> None:
    _, out = _outputs([1, 2, 3, 4, 8], extension_followed=False)
    assert out.task is not None
    assert out.task["restriction"]["period"] == {
        "start": (CLOCK + timedelta(days=7)).date().isoformat(),
        "end": (CLOCK + timedelta(days=14)).date().isoformat(),
    }
    assert out.service_request is not None and out.service_request["priority"] == "routine"
    severities = {i["code"]["coding"][0]["code"]: i["severity"] for i in out.detected_issues}
    assert severities == {"R4": "moderate", "R5": "moderate", "W1": "low"}
    assert out.care_plan["activity"][0]["detail"]["status"] == "on-hold"


def test_red_flag_outputs_are_urgent() -> None:
    pd = plan_definition()
    flag = red_flag_screen(CLOCK - timedelta(hours=2), ("major-trauma",), rid="rf-pos")
    rec = record([*eligible_state(CLOCK), flag])
    d = decide(pd, rec, session([1, 1, 1, 1, 1], CLOCK), CLOCK)
    out = build_outputs(d, read_params(pd), care_plan())
    assert out.service_request and out.service_request["priority"] == "urgent"
    assert [i["severity"] for i in out.detected_issues] == ["high"]
    assert {a["detail"]["status"] for a in out.care_plan["activity"]} == {"stopped"}


def test_same_input_gives_byte_identical_output() -> None:
    first = _outputs([1, 2, 3, 4, 8])[1]
    second = _outputs([1, 2, 3, 4, 8])[1]
    dump = lambda o: orjson.dumps([o.guidance_response, o.care_plan, *o.created])  # noqa: E731
    assert dump(first) == dump(second)


def test_session_from_bundle_matches_from_observations() -> None:
    bundle = session_bundle([3, 2, 1, 1, 0], CLOCK)
    from_bundle = Session.from_bundle(bundle)
    assert len(from_bundle.members) == 5
    pd = plan_definition()
    rec = record(eligible_state(CLOCK))
    a = decide(pd, rec, from_bundle, CLOCK)
    b = decide(pd, rec, session([3, 2, 1, 1, 0], CLOCK), CLOCK)
    assert (a.code, a.features["reps"]) == (b.code, b.features["reps"])


def test_bundle_with_dangling_member_is_refused() -> None:
    bundle = session_bundle([3, 2, 1], CLOCK)
    bundle["entry"].pop()
    with pytest.raises(ValueError, match="hasMember"):
        Session.from_bundle(bundle)


def test_eligibility_data_required_is_valid_r4() -> None:
    pd = plan_definition()
    d = decide(pd, record([], plan=None), None, CLOCK)
    assert d.code == "data-required"
    out = build_outputs(d, read_params(pd), care_plan())
    _validate(out.guidance_response)
    wanted = [r["id"] for r in out.guidance_response["dataRequirement"]]
    assert wanted == ["red-flag-screen", "episode-phase", "daily-pain"]


def test_a_decision_older_than_the_plans_newest_changes_nothing_the_patient_sees() -> None:
    """A late session's decision (build_outputs' `newer`): recorded and reviewable, but the
    CarePlan, the retry window and the patient's message stay with the newest decision."""
    pd = plan_definition()
    reps, kwargs = CASES["hold-back"]
    d = decide(pd, record(eligible_state(CLOCK)), session(reps, CLOCK, **kwargs), CLOCK)
    plan = care_plan()
    out = build_outputs(d, read_params(pd), plan, newer=CLOCK + timedelta(hours=3))
    on_time = build_outputs(d, read_params(pd), plan)
    assert on_time.task is not None and on_time.communication_request is not None
    assert out.care_plan == plan
    assert out.task is None and out.communication_request is None
    assert out.detected_issues == on_time.detected_issues
    assert out.service_request == on_time.service_request
    assert "later decision" in out.guidance_response["note"][-1]["text"]
    targets = {t["reference"].partition("/")[0] for t in out.provenance["target"]}
    assert "CarePlan" not in targets
    for resource in [out.guidance_response, *out.created]:
        _validate(resource)
