"""CarePlans that instantiate the protocol are checked against the PlanDefinition they name."""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from service.protocol.codes import (
    ACTIVITY_DEFINITION_BASE,
    CAREPLAN_CS,
    EXT_PROTOCOL_LEVEL,
    EXT_REPETITIONS_PER_SESSION,
    PLAN_DEFINITION_URL,
    UCUM,
)
from service.protocol.conformance import Problem, check_care_plan
from service.protocol.definitions import shipped_definition

FLEXION = f"{ACTIVITY_DEFINITION_BASE}/flexion-in-lying|1.0.0"
SITTING = f"{ACTIVITY_DEFINITION_BASE}/flexion-in-sitting|1.0.0"
EXTENSION = f"{ACTIVITY_DEFINITION_BASE}/extension-in-lying|1.0.0"
PLAN = f"{PLAN_DEFINITION_URL}|1.0.0"


def _timing(frequency: int = 3, frequency_max: int | None = 4, **repeat: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"frequency": frequency, "period": 1, "periodUnit": "d"}
    if frequency_max is not None:
        out["frequencyMax"] = frequency_max
    out.update(repeat)
    return {"repeat": out}


def _detail_activity(
    canonical: str, *, level: int | None = None, status: str = "in-progress", **detail: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "ServiceRequest",
        "instantiatesCanonical": [canonical],
        "status": status,
        **detail,
    }
    if level is not None:
        body["code"] = {"coding": [{"system": CAREPLAN_CS, "code": f"level-{level}"}]}
    return {"detail": body}


def detail_care_plan(level: int = 1) -> dict[str, Any]:
    """A conformant CarePlan whose activities are inline details."""
    reps = {1: 5, 2: 10, 3: 10}[level]
    return {
        "resourceType": "CarePlan",
        "id": "cp-detail",
        "status": "active",
        "intent": "plan",
        "instantiatesCanonical": [PLAN],
        "subject": {"reference": "Patient/p1"},
        "activity": [
            _detail_activity(
                SITTING if level == 3 else FLEXION,
                level=level,
                scheduledTiming=_timing(),
                quantity={"value": reps, "unit": "repetitions", "system": UCUM, "code": "{reps}"},
            ),
            _detail_activity(EXTENSION, scheduledTiming=_timing()),
        ],
    }


def contained_care_plan() -> dict[str, Any]:
    """A conformant CarePlan whose activities reference contained ServiceRequests."""

    def request(rid: str, canonical: str, **extra: Any) -> dict[str, Any]:
        return {
            "resourceType": "ServiceRequest",
            "id": rid,
            "status": "active",
            "intent": "plan",
            "instantiatesCanonical": [canonical],
            "subject": {"reference": "Patient/p1"},
            "occurrenceTiming": _timing(),
            **extra,
        }

    return {
        "resourceType": "CarePlan",
        "id": "cp-contained",
        "status": "active",
        "intent": "plan",
        "instantiatesCanonical": [PLAN],
        "subject": {"reference": "Patient/p1"},
        "contained": [
            request(
                "flexion",
                FLEXION,
                extension=[{"url": EXT_PROTOCOL_LEVEL, "valueInteger": 1}],
                quantityRange={"low": {"value": 5}, "high": {"value": 6}},
            ),
            request("extension", EXTENSION),
        ],
        "activity": [
            {"reference": {"reference": "#flexion"}},
            {"reference": {"reference": "#extension"}},
        ],
    }


@pytest.fixture(scope="module")
def plan() -> dict[str, Any]:
    return shipped_definition("PlanDefinition", "flexion-in-lying-protocol")


def _expressions(problems: list[Problem]) -> list[str]:
    return [p.expression for p in problems]


# ---------------------------------------------------------------- conformant plans


@pytest.mark.parametrize("level", [1, 2, 3])
def test_a_good_detail_care_plan_passes(plan: dict[str, Any], level: int) -> None:
    care_plan = detail_care_plan(level)
    get_fhir_model_class("CarePlan").model_validate(care_plan)  # the fixture is valid R4
    assert check_care_plan(care_plan, plan) == []


def test_a_good_contained_care_plan_passes(plan: dict[str, Any]) -> None:
    care_plan = contained_care_plan()
    get_fhir_model_class("CarePlan").model_validate(care_plan)
    assert check_care_plan(care_plan, plan) == []


def test_a_plan_without_stated_dose_passes(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    for activity in care_plan["activity"]:
        activity["detail"].pop("scheduledTiming")
        activity["detail"].pop("quantity", None)
    assert check_care_plan(care_plan, plan) == []


def test_the_same_rate_per_week_is_not_a_contradiction(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["activity"][0]["detail"]["scheduledTiming"] = {
        "repeat": {"frequency": 21, "frequencyMax": 28, "period": 1, "periodUnit": "wk"}
    }
    assert check_care_plan(care_plan, plan) == []


def test_timing_code_tid_fits(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["activity"][0]["detail"]["scheduledTiming"] = {"code": {"coding": [{"code": "TID"}]}}
    assert check_care_plan(care_plan, plan) == []


def test_unmarked_ten_repetitions_fit_level_two(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    detail = care_plan["activity"][0]["detail"]
    detail.pop("code")
    detail["quantity"] = {"value": 10}
    assert check_care_plan(care_plan, plan) == []


def test_the_check_does_not_change_its_inputs(plan: dict[str, Any]) -> None:
    care_plan = contained_care_plan()
    before = (copy.deepcopy(care_plan), copy.deepcopy(plan))
    check_care_plan(care_plan, plan)
    assert (care_plan, plan) == before


# ---------------------------------------------------------------- the PlanDefinition canonical


def test_wrong_plan_definition_version(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["instantiatesCanonical"] = [f"{PLAN_DEFINITION_URL}|0.9.0"]
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == ["CarePlan.instantiatesCanonical[0]"]
    assert "0.9.0" in problems[0].message and "1.0.0" in problems[0].message


def test_plan_definition_without_version(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["instantiatesCanonical"] = ["http://example.org/other", PLAN_DEFINITION_URL]
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == ["CarePlan.instantiatesCanonical[1]"]
    assert "no version" in problems[0].message


def test_plan_definition_not_named(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    del care_plan["instantiatesCanonical"]
    assert _expressions(check_care_plan(care_plan, plan)) == ["CarePlan.instantiatesCanonical"]


def test_a_clinic_version_is_checked_against_itself(plan: dict[str, Any]) -> None:
    clinic_plan = copy.deepcopy(plan)
    clinic_plan["version"] = "2.0.0"
    care_plan = detail_care_plan()
    assert _expressions(check_care_plan(care_plan, clinic_plan)) == [
        "CarePlan.instantiatesCanonical[0]"
    ]
    care_plan["instantiatesCanonical"] = [f"{PLAN_DEFINITION_URL}|2.0.0"]
    assert check_care_plan(care_plan, clinic_plan) == []


# ---------------------------------------------------------------- activities


def test_missing_extension_activity(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    del care_plan["activity"][1]
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == ["CarePlan.activity"]
    assert "Extension in Lying" in problems[0].message


def test_missing_flexion_activity(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    del care_plan["activity"][0]
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == ["CarePlan.activity"]
    assert "flexion" in problems[0].message


def test_live_flexion_needs_live_extension(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["activity"][1]["detail"]["status"] = "stopped"
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == ["CarePlan.activity"]
    # Both stopped (e.g. after stop-and-refer) is consistent again.
    care_plan["activity"][0]["detail"]["status"] = "stopped"
    assert check_care_plan(care_plan, plan) == []


def test_entered_in_error_activities_do_not_count(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["activity"][1]["detail"]["status"] = "entered-in-error"
    assert _expressions(check_care_plan(care_plan, plan)) == ["CarePlan.activity"]


def test_contained_reference_must_resolve(plan: dict[str, Any]) -> None:
    care_plan = contained_care_plan()
    care_plan["activity"][1]["reference"]["reference"] = "#nowhere"
    expressions = _expressions(check_care_plan(care_plan, plan))
    assert expressions == ["CarePlan.activity[1].reference", "CarePlan.activity"]


def test_activity_definition_version_must_match(plan: dict[str, Any]) -> None:
    care_plan = contained_care_plan()
    care_plan["contained"][1]["instantiatesCanonical"] = [
        f"{ACTIVITY_DEFINITION_BASE}/extension-in-lying|2.0.0"
    ]
    assert _expressions(check_care_plan(care_plan, plan)) == [
        "CarePlan.contained[1].instantiatesCanonical[0]"
    ]


def test_unversioned_activity_definition_is_accepted(plan: dict[str, Any]) -> None:
    care_plan = contained_care_plan()
    care_plan["contained"][1]["instantiatesCanonical"] = [
        f"{ACTIVITY_DEFINITION_BASE}/extension-in-lying"
    ]
    assert check_care_plan(care_plan, plan) == []


# ---------------------------------------------------------------- dose


def test_too_many_sessions_per_day(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["activity"][0]["detail"]["scheduledTiming"] = _timing(3, 6)
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == [
        "CarePlan.activity[0].detail.scheduledTiming.repeat.frequencyMax"
    ]
    assert "3-6 sessions per day" in problems[0].message
    assert "3-4 sessions per day" in problems[0].message


def test_too_few_sessions_per_day(plan: dict[str, Any]) -> None:
    care_plan = contained_care_plan()
    care_plan["contained"][0]["occurrenceTiming"] = _timing(1, None)
    assert _expressions(check_care_plan(care_plan, plan)) == [
        "CarePlan.contained[0].occurrenceTiming.repeat.frequency"
    ]


def test_a_month_is_not_a_fixed_number_of_days(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["activity"][0]["detail"]["scheduledTiming"] = {
        "repeat": {"frequency": 100, "period": 1, "periodUnit": "mo"}
    }
    assert _expressions(check_care_plan(care_plan, plan)) == [
        "CarePlan.activity[0].detail.scheduledTiming.repeat.periodUnit"
    ]


def test_wrong_repetitions_for_the_level_in_a_contained_request(plan: dict[str, Any]) -> None:
    care_plan = contained_care_plan()
    care_plan["contained"][0]["quantityRange"] = {"low": {"value": 10}, "high": {"value": 10}}
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == ["CarePlan.contained[0].quantityRange"]
    assert "5-6 repetitions per session" in problems[0].message


def test_wrong_repetitions_in_detail_quantity(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["activity"][0]["detail"]["quantity"] = {"value": 8}
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == ["CarePlan.activity[0].detail.quantity"]


def test_unmarked_repetitions_fitting_no_level(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    detail = care_plan["activity"][0]["detail"]
    detail.pop("code")
    detail["quantity"] = {"value": 8}
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == ["CarePlan.activity[0].detail.quantity"]
    assert "10 or 5-6" in problems[0].message


def test_repetitions_extension_is_checked(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["activity"][0]["detail"]["extension"] = [
        {
            "url": EXT_REPETITIONS_PER_SESSION,
            "valueRange": {"low": {"value": 5}, "high": {"value": 12}},
        }
    ]
    assert _expressions(check_care_plan(care_plan, plan)) == [
        "CarePlan.activity[0].detail.extension[0].valueRange"
    ]


def test_quantity_in_minutes_is_not_repetitions(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["activity"][0]["detail"]["quantity"] = {"value": 5, "system": UCUM, "code": "min"}
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == ["CarePlan.activity[0].detail.quantity"]


def test_doses_from_different_levels(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    detail = care_plan["activity"][0]["detail"]
    detail.pop("code")
    detail["quantity"] = {"value": 5}
    detail["extension"] = [
        {
            "url": EXT_REPETITIONS_PER_SESSION,
            "valueRange": {"low": {"value": 10}, "high": {"value": 10}},
        }
    ]
    assert _expressions(check_care_plan(care_plan, plan)) == ["CarePlan.activity[0].detail"]


def test_level_marker_must_match_the_activity(plan: dict[str, Any]) -> None:
    care_plan = detail_care_plan()
    care_plan["activity"][0]["detail"]["code"]["coding"][0]["code"] = "level-3"
    problems = check_care_plan(care_plan, plan)
    assert _expressions(problems) == ["CarePlan.activity[0].detail.code"]
    assert "Flexion in Sitting" in problems[0].message


def test_unknown_level(plan: dict[str, Any]) -> None:
    care_plan = contained_care_plan()
    care_plan["contained"][0]["extension"][0]["valueInteger"] = 4
    assert _expressions(check_care_plan(care_plan, plan)) == ["CarePlan.contained[0].extension[0]"]


def test_extension_activity_follows_every_session(plan: dict[str, Any]) -> None:
    # The Cobra follows each flexion session, so once a day contradicts 3-4 sessions a day.
    care_plan = detail_care_plan()
    care_plan["activity"][1]["detail"]["scheduledTiming"] = _timing(1, None)
    assert _expressions(check_care_plan(care_plan, plan)) == [
        "CarePlan.activity[1].detail.scheduledTiming.repeat.frequency"
    ]


# ---------------------------------------------------------------- purity


@pytest.mark.parametrize("module", ["conformance.py", "definitions.py"])
def test_protocol_modules_import_no_framework(module: str) -> None:
    source = Path(__file__).resolve().parents[2] / "service" / "protocol" / module
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"fastapi", "sqlalchemy", "starlette", "httpx", "requests"}
