"""Issue 4 over HTTP: $submit-session, $evaluate, sessions as plain Observations/transactions."""

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from service.protocol.codes import PLAN_DEFINITION_URL
from service.usecases import crud
from tests.api.helpers import if_match, store_snapshot
from tests.api.scenario import (
    created,
    day,
    decision_codes,
    eligible_patient,
    enrol,
    part,
    put,
    submit,
)
from tests.protocol import builders as b

DISCLAIMER = "consult a doctor or a physiotherapist"


@pytest.fixture
def plan_id(client) -> str:
    """An enrolled, eligible patient; the scenario clock starts 40 days ago."""
    eligible_patient(client, day(0))
    # $apply decides as of now; this patient was eligible at day 0 and enrols now.
    eligible_patient(client)
    return enrol(client)


def test_wearing_off_session_continues(client, plan_id):
    response = submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert decision_codes(answer)[:2] == ["continue", "R9"]
    guidance = part(answer, "decision")
    assert guidance["moduleCanonical"] == f"{PLAN_DEFINITION_URL}|1.0.0"
    assert guidance["status"] == "success"
    assert guidance["result"]["reference"] == f"CarePlan/{plan_id}"
    assert guidance["meta"]["versionId"] == "1"
    outputs = {p["name"] for p in guidance["contained"][0]["parameter"]}
    assert {"decision", "level-current"} <= outputs
    care_plan = part(answer, "carePlan")
    assert care_plan["activity"][0]["detail"]["status"] == "in-progress"
    provenance = created(answer, "Provenance")[0]
    entities = {e["what"].get("reference") for e in provenance["entity"]}
    assert any(ref and ref.startswith("Observation/") for ref in entities)
    communication = created(answer, "CommunicationRequest")[0]
    assert DISCLAIMER in communication["payload"][-1]["contentString"].lower()
    # The decision is findable by search, e.g. by a scheduling system.
    found = client.get(f"/fhir/GuidanceResponse?result=CarePlan/{plan_id}").json()
    assert found["total"] == 1


def test_resubmission_is_idempotent(client, app, plan_id):
    first = submit(client, plan_id, [3, 2, 1, 1, 0], day(1)).json()
    before = store_snapshot(app)
    again = submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    assert again.status_code == 200
    assert again.json() == first
    assert store_snapshot(app) == before
    other = submit(
        client, plan_id, [3, 2, 1, 1, 0], day(2), sid=b.session_resources([1], day(1))[0]["id"]
    )
    assert other.status_code == 409


def test_rising_session_holds_back_with_retry_window(client, plan_id):
    submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    response = submit(client, plan_id, [1, 2, 4, 6], day(2))
    answer = response.json()
    assert decision_codes(answer)[:2] == ["hold-back", "R4"]
    task = created(answer, "Task")[0]
    session_day = day(2).date()
    assert task["restriction"]["period"] == {
        "start": (session_day + timedelta(days=7)).isoformat(),
        "end": (session_day + timedelta(days=14)).isoformat(),
    }
    assert part(answer, "carePlan")["activity"][0]["detail"]["status"] == "on-hold"
    assert created(answer, "DetectedIssue")
    # A session before the window opens is stored and answered with the same hold.
    early = submit(client, plan_id, [0, 0, 0, 0, 0], day(5)).json()
    assert decision_codes(early)[0] == "hold-back"
    # Once the window has opened, $evaluate resumes at level 1 (R11).
    evaluated = client.post(
        f"/fhir/CarePlan/{plan_id}/$evaluate",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "at", "valueDateTime": day(9).isoformat().replace("+00:00", "Z")}
            ],
        },
    )
    assert evaluated.status_code == 200, evaluated.text
    assert "R11" in decision_codes(evaluated.json())


def test_evaluating_again_at_the_same_clock_answers_as_before(client, app, plan_id):
    submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    at = {"name": "at", "valueDateTime": day(2).isoformat().replace("+00:00", "Z")}
    request = {"resourceType": "Parameters", "parameter": [at]}
    first = client.post(f"/fhir/CarePlan/{plan_id}/$evaluate", json=request)
    assert first.status_code == 200, first.text
    before = store_snapshot(app)
    again = client.post(f"/fhir/CarePlan/{plan_id}/$evaluate", json=request)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert store_snapshot(app) == before
    later = {**at, "valueDateTime": day(3).isoformat().replace("+00:00", "Z")}
    third = client.post(
        f"/fhir/CarePlan/{plan_id}/$evaluate",
        json={"resourceType": "Parameters", "parameter": [later]},
    )
    assert part(third.json(), "decision")["id"] != part(first.json(), "decision")["id"]


@pytest.mark.parametrize(
    ("mutate", "expression"),
    [
        (lambda e: e[1]["resource"]["valueQuantity"].update(value=11), "valueQuantity.value"),
        (lambda e: e[1]["resource"]["valueQuantity"].update(value=-1), "valueQuantity.value"),
        (lambda e: e[1]["resource"]["valueQuantity"].update(value=2.5), "valueQuantity.value"),
        (lambda e: e[1]["resource"]["valueQuantity"].update(code="mm"), "valueQuantity"),
        (lambda e: e[1]["resource"]["code"]["coding"][0].update(code="1234-5"), "code"),
        (lambda e: e[2]["resource"]["component"][0].update(valueInteger=1), "component"),
        (lambda e: e[1]["resource"].update(effectiveDateTime="2999-01-01T00:00:00Z"), "effective"),
        (lambda e: e[0]["resource"].update(subject={"reference": "Patient/other"}), "subject"),
        (lambda e: e[0]["resource"].pop("identifier"), "identifier"),
        (lambda e: e[0]["resource"].update(status="preliminary"), "entry[0].resource.status"),
        (lambda e: e[0]["resource"].update(status="entered-in-error"), "entry[0].resource.status"),
        (lambda e: e[2]["resource"]["valueQuantity"].update(comparator=">"), "comparator"),
        (
            lambda e: e[0]["resource"].update(subject={"identifier": {"value": "MRN-9"}}),
            "entry[0].resource.subject",
        ),
        (lambda e: e.append({**e[1], "fullUrl": "urn:uuid:" + "0" * 8 + "-0-0-0-9"}), "entry[6]"),
        (
            lambda e: e[0]["resource"]["hasMember"].append({"reference": "urn:uuid:gone"}),
            "entry[0].resource.hasMember",
        ),
    ],
)
def test_bad_clinical_input_is_refused(client, app, plan_id, mutate, expression):
    bundle = b.session_bundle([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    mutate(bundle["entry"])
    before = store_snapshot(app)
    response = client.post(f"/fhir/CarePlan/{plan_id}/$submit-session", json=bundle)
    assert response.status_code == 422, response.text
    issues = response.json()["issue"]
    assert any(expression in i["expression"][0] for i in issues), issues
    assert store_snapshot(app) == before


def test_session_for_a_plan_not_on_this_protocol(client, app):
    eligible_patient(client)
    other = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{b.PATIENT_ID}"},
    }
    plan_id = client.post("/fhir/CarePlan", json=other).json()["id"]
    before = store_snapshot(app)
    response = submit(client, plan_id, [1, 1, 1], day(1))
    assert response.status_code == 422
    assert store_snapshot(app) == before


def test_session_on_a_stopped_plan(client, app, plan_id):
    plan = client.get(f"/fhir/CarePlan/{plan_id}").json()
    plan["status"] = "revoked"
    assert (
        client.put(f"/fhir/CarePlan/{plan_id}", json=plan, headers=if_match(plan)).status_code
        == 200
    )
    before = store_snapshot(app)
    assert submit(client, plan_id, [1, 1, 1], day(1)).status_code == 422
    assert store_snapshot(app) == before


def test_unknown_care_plan_is_404(client):
    assert submit(client, "nope", [1, 1, 1], day(1)).status_code == 404


def test_session_as_a_transaction_bundle_is_evaluated(client, plan_id):
    bundle = b.session_bundle([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    transaction = copy.deepcopy(bundle)
    transaction["type"] = "transaction"
    for entry in transaction["entry"]:
        entry["request"] = {"method": "POST", "url": "Observation"}
    response = client.post("/fhir", json=transaction)
    assert response.status_code == 200, response.text
    found = client.get(f"/fhir/GuidanceResponse?result=CarePlan/{plan_id}").json()
    assert found["total"] == 1
    codes = [c["code"] for rc in found["entry"][0]["resource"]["reasonCode"] for c in rc["coding"]]
    assert codes[0] == "continue"


def test_session_as_plain_observations_is_evaluated_once_complete(client, plan_id):
    panel, members = b.session_resources([1, 2, 4, 6], day(1), care_plan_id=plan_id)
    for member in members:
        assert client.put(f"/fhir/Observation/{member['id']}", json=member).status_code == 201
    search = f"/fhir/GuidanceResponse?result=CarePlan/{plan_id}"
    assert client.get(search).json()["total"] == 0
    assert client.put(f"/fhir/Observation/{panel['id']}", json=panel).status_code == 201
    found = client.get(search).json()
    assert found["total"] == 1
    assert client.get(f"/fhir/CarePlan/{plan_id}").json()["activity"][0]["detail"]["status"] == (
        "on-hold"
    )


def test_panel_first_then_repetitions_is_evaluated_when_the_last_arrives(client, plan_id):
    """PUT with client ids: the stored panel already lists each repetition, so each one's
    arrival looks the panel up (a POSTed repetition, with an id made just then, cannot be
    listed by any stored panel and skips that lookup)."""
    panel, members = b.session_resources([1, 2, 4, 6], day(1), care_plan_id=plan_id)
    assert client.put(f"/fhir/Observation/{panel['id']}", json=panel).status_code == 201
    search = f"/fhir/GuidanceResponse?result=CarePlan/{plan_id}"
    for member in members[:-1]:
        assert client.put(f"/fhir/Observation/{member['id']}", json=member).status_code == 201
    assert client.get(search).json()["total"] == 0
    last = members[-1]
    assert client.put(f"/fhir/Observation/{last['id']}", json=last).status_code == 201
    assert client.get(search).json()["total"] == 1


def test_a_repetition_with_a_fresh_id_skips_the_panel_lookup() -> None:
    from service.store.repository import Stored
    from service.usecases.session_observations import decide_completed_sessions

    class NoLookups:
        def find(self, *args: object, **kwargs: object) -> list[dict]:
            raise AssertionError("looked up panels for an id no panel can list")

        def get(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("looked up (locked) the patient for an id no panel can list")

    repetition = b.repetition(1, 3, day(1), "fresh")
    stored = Stored(1, "Observation", "fresh", 1, day(1), False, repetition)
    decide_completed_sessions(NoLookups(), [stored], fresh_ids=True)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="looked up"):
        decide_completed_sessions(NoLookups(), [stored], fresh_ids=False)  # type: ignore[arg-type]


def test_pain_score_out_of_range_as_plain_observation(client, app):
    eligible_patient(client)
    obs = b.daily_pain(datetime.now(UTC) - timedelta(hours=1), 3)
    obs["valueQuantity"]["value"] = 12
    before = store_snapshot(app)
    assert client.post("/fhir/Observation", json=obs).status_code == 422
    assert store_snapshot(app) == before


def test_unsupported_format_is_refused_before_the_session_is_stored(client, app, plan_id):
    bundle = b.session_bundle([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    before = store_snapshot(app)
    response = client.post(f"/fhir/CarePlan/{plan_id}/$submit-session?_format=xml", json=bundle)
    assert response.status_code == 406
    assert response.json()["resourceType"] == "OperationOutcome"
    assert store_snapshot(app) == before
    transaction = {"resourceType": "Bundle", "type": "transaction"}
    assert (
        client.post("/fhir", json=transaction, headers={"Accept": "application/xml"}).status_code
        == 406
    )


# --- decisions older than the plan's newest one; plans that take no sessions ---------------


def _evaluate(client, plan_id: str, at: str):
    body = {"resourceType": "Parameters", "parameter": [{"name": "at", "valueDateTime": at}]}
    return client.post(f"/fhir/CarePlan/{plan_id}/$evaluate", json=body)


def _instant(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_a_late_tolerated_session_does_not_lift_a_later_hold(client, app, plan_id):
    """A session timed before the plan's newest decision is decided at its own time and
    recorded, but the CarePlan stays with the newest decision (here: the hold)."""
    submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    hold = submit(client, plan_id, [1, 2, 4, 6], day(2, hour=12)).json()
    assert decision_codes(hold)[:2] == ["hold-back", "R4"]
    plan_before = client.get(f"/fhir/CarePlan/{plan_id}").json()
    late = submit(client, plan_id, [3, 2, 1, 1, 0], day(2, hour=8))
    assert late.status_code == 200, late.text
    answer = late.json()
    assert decision_codes(answer)[0] == "continue"  # what its own time gives
    note = " ".join(n["text"] for n in part(answer, "decision")["note"])
    assert "later decision" in note
    assert part(answer, "carePlan") == plan_before
    assert client.get(f"/fhir/CarePlan/{plan_id}").json() == plan_before
    assert not created(answer, "Task") and not created(answer, "CommunicationRequest")
    provenance = created(answer, "Provenance")[0]
    assert not any(t["reference"].startswith("CarePlan/") for t in provenance["target"])
    # Answered as before when sent again, storing nothing.
    before = store_snapshot(app)
    again = submit(client, plan_id, [3, 2, 1, 1, 0], day(2, hour=8))
    assert again.json() == answer
    assert store_snapshot(app) == before
    # The next session is decided from both, in time order: still the hold.
    nxt = submit(client, plan_id, [3, 2, 1, 1, 0], day(3)).json()
    assert decision_codes(nxt)[:2] == ["hold-back", "R11"]


def test_a_late_rising_session_reaches_the_clinician_not_the_plan(client, plan_id):
    submit(client, plan_id, [3, 2, 1, 1, 0], day(2, hour=12))
    late = submit(client, plan_id, [1, 2, 4, 6], day(2, hour=8)).json()
    assert decision_codes(late)[:2] == ["hold-back", "R4"]
    assert created(late, "DetectedIssue")  # the finding is recorded for review
    assert not created(late, "Task")  # no retry window for a hold that was not applied
    assert part(late, "carePlan")["activity"][0]["detail"]["status"] == "in-progress"


def test_evaluating_at_a_past_clock_leaves_the_plan_as_it_is(client, plan_id):
    submit(client, plan_id, [1, 2, 4, 6], day(2))
    plan_before = client.get(f"/fhir/CarePlan/{plan_id}").json()
    earlier = _evaluate(client, plan_id, _instant(day(1)))
    assert earlier.status_code == 200, earlier.text
    assert part(earlier.json(), "carePlan") == plan_before
    assert client.get(f"/fhir/CarePlan/{plan_id}").json() == plan_before


def test_evaluating_in_the_future_is_refused(client, app, plan_id):
    before = store_snapshot(app)
    response = _evaluate(client, plan_id, _instant(datetime.now(UTC) + timedelta(days=8)))
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["at"]
    assert store_snapshot(app) == before


def test_evaluating_keeps_the_offset_of_at(client, plan_id):
    """`at` with an offset is that local time: the retry window opens at local midnight."""
    submit(client, plan_id, [1, 2, 4, 6], day(2))
    opens = (day(2) + timedelta(days=7)).date().isoformat()
    just_before = _evaluate(client, plan_id, f"{opens}T00:30:00+02:00")
    answer = just_before.json()
    assert part(answer, "decision")["occurrenceDateTime"] == f"{opens}T00:30:00+02:00"
    assert decision_codes(answer)[0] != "hold-back"  # local date: the window has opened
    utc_same_instant = (datetime.fromisoformat(f"{opens}T00:30:00+02:00")).astimezone(UTC)
    again = _evaluate(client, plan_id, _instant(utc_same_instant))
    assert again.json() == answer  # one instant, one evaluation, whatever its offset


def test_a_plan_stopped_for_review_takes_no_session_until_a_clinician_resumes_it(
    client, app, plan_id
):
    stop = submit(client, plan_id, [3, 2, 1, 1, 0], day(1), location_end="below-knee").json()
    assert decision_codes(stop)[:2] == ["stop-and-refer", "R2"]
    before = store_snapshot(app)
    refused = submit(client, plan_id, [3, 2, 1, 1, 0], day(2))
    assert refused.status_code == 422, refused.text
    issue = refused.json()["issue"][0]
    assert "clinician" in issue["diagnostics"]
    assert issue["expression"][0].startswith("CarePlan.activity[")
    assert _evaluate(client, plan_id, _instant(day(2, hour=10))).status_code == 422
    assert store_snapshot(app) == before
    # The clinician resumes the plan: sessions are decided again.
    plan = client.get(f"/fhir/CarePlan/{plan_id}").json()
    for activity in plan["activity"]:
        activity["detail"]["status"] = "in-progress"
    assert (
        client.put(f"/fhir/CarePlan/{plan_id}", json=plan, headers=if_match(plan)).status_code
        == 200
    )
    resumed = submit(client, plan_id, [3, 2, 1, 1, 0], day(3))
    assert resumed.status_code == 200, resumed.text
    assert decision_codes(resumed.json())[0] == "continue"


def test_a_plan_a_clinician_put_on_hold_takes_no_session(client, app, plan_id):
    plan = client.get(f"/fhir/CarePlan/{plan_id}").json()
    plan["status"] = "on-hold"
    assert (
        client.put(f"/fhir/CarePlan/{plan_id}", json=plan, headers=if_match(plan)).status_code
        == 200
    )
    before = store_snapshot(app)
    response = submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["CarePlan.status"]
    assert store_snapshot(app) == before


def test_an_identifier_resubmitted_with_other_content_is_a_conflict(client, app, plan_id):
    first = submit(client, plan_id, [3, 2, 1, 1, 0], day(1), sid="session-7")
    assert first.status_code == 200, first.text
    before = store_snapshot(app)
    changed = submit(client, plan_id, [1, 2, 3, 4, 6], day(1), sid="session-7")
    assert changed.status_code == 409, changed.text
    assert changed.json()["issue"][0]["expression"] == ["Observation.identifier"]
    unusable = submit(client, plan_id, [3, 2, 1, 1, 11], day(1), sid="session-7")
    assert unusable.status_code == 422, unusable.text  # told what is wrong, not "conflict"
    assert store_snapshot(app) == before
    # The same content, written with 3.0 for 3, is the same session.
    bundle = b.session_bundle([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id, sid="session-7")
    bundle["entry"][1]["resource"]["valueQuantity"]["value"] = 3.0
    again = client.post(f"/fhir/CarePlan/{plan_id}/$submit-session", json=bundle)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()


def test_an_identifier_is_a_session_of_its_own_care_plan(client, plan_id):
    """Apps number sessions per patient or plan: another plan's session-1 is not this one's."""
    other_plan = enrol(client)
    assert submit(client, plan_id, [3, 2, 1, 1, 0], day(1), sid="session-1").status_code == 200
    other = submit(client, other_plan, [3, 2, 1, 1, 0], day(2), sid="session-1")
    assert other.status_code == 200, other.text
    assert part(other.json(), "decision")["result"]["reference"] == f"CarePlan/{other_plan}"


# --- sessions stored as plain Observations: decided exactly once ---------------------------


def _decisions(client, plan_id: str) -> int:
    return client.get(f"/fhir/GuidanceResponse?result=CarePlan/{plan_id}").json()["total"]


def test_updating_a_decided_panel_does_not_decide_again(client, plan_id):
    panel, members = b.session_resources([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    for resource in [*members, panel]:
        put(client, resource)
    assert _decisions(client, plan_id) == 1
    panel["identifier"][0]["value"] = "corrected-identifier"
    assert client.put(f"/fhir/Observation/{panel['id']}", json=panel).status_code == 200
    assert _decisions(client, plan_id) == 1


def test_a_second_panel_over_decided_repetitions_is_refused(client, app, plan_id):
    panel, members = b.session_resources([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    for resource in [*members, panel]:
        put(client, resource)
    twin = {**panel, "id": "twin-panel", "identifier": [{"value": "twin"}]}
    before = store_snapshot(app)
    response = client.put("/fhir/Observation/twin-panel", json=twin)
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["Observation.hasMember"]
    assert store_snapshot(app) == before
    assert _decisions(client, plan_id) == 1


def test_a_stored_panel_needs_its_patient(client, app, plan_id):
    panel, _ = b.session_resources([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    panel.pop("subject")
    before = store_snapshot(app)
    response = client.put(f"/fhir/Observation/{panel['id']}", json=panel)
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["Observation.subject"]
    assert store_snapshot(app) == before


def _store_at_once(app, resources: list[dict]) -> None:
    """PUT the resources from threads released together, each in its own transaction, as the
    routes do (the TestClient runs one request at a time)."""
    store = app.state.store
    barrier = threading.Barrier(len(resources))

    def store_one(resource: dict) -> None:
        barrier.wait()
        store.run(lambda tx: crud.update_in(tx, resource, resource["id"], None, caller=None))

    with ThreadPoolExecutor(max_workers=len(resources)) as pool:
        list(pool.map(store_one, resources))


def test_last_repetitions_stored_at_once_decide_the_session_once(client, app, plan_id):
    """Two transactions that each store one of the last repetitions: the CarePlan lock makes
    the second see the first's, so the session is decided, and only once."""
    for n in range(4):
        panel, members = b.session_resources(
            [3, 2, 1, 1, 0], day(1 + n), care_plan_id=plan_id, sid=f"race-{n}"
        )
        for resource in [panel, *members[:-2]]:
            put(client, resource)
        _store_at_once(app, members[-2:])
        assert _decisions(client, plan_id) == n + 1, f"session {n}"


def test_references_under_this_servers_base_are_this_servers(client, plan_id):
    """The same Patient and CarePlan written as absolute URLs under the service's base."""
    bundle = b.session_bundle([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    base = "http://testserver/fhir"
    for entry in bundle["entry"]:
        entry["resource"]["subject"] = {"reference": f"{base}/Patient/{b.PATIENT_ID}"}
    bundle["entry"][0]["resource"]["basedOn"] = [{"reference": f"{base}/CarePlan/{plan_id}"}]
    response = client.post(f"/fhir/CarePlan/{plan_id}/$submit-session", json=bundle)
    assert response.status_code == 200, response.text
    panel_ref = created_inputs(response.json())[0]
    panel = client.get(f"/fhir/{panel_ref}").json()
    assert panel["subject"] == {"reference": f"Patient/{b.PATIENT_ID}"}
    # Another server's Patient with the same id is another patient.
    other = b.session_bundle([3, 2, 1, 1, 0], day(2), care_plan_id=plan_id)
    other["entry"][0]["resource"]["subject"] = {
        "reference": f"https://elsewhere.example/fhir/Patient/{b.PATIENT_ID}"
    }
    refused = client.post(f"/fhir/CarePlan/{plan_id}/$submit-session", json=other)
    assert refused.status_code == 422, refused.text


def created_inputs(answer: dict) -> list[str]:
    """The Observations the decision's Provenance names, panel first."""
    provenance = created(answer, "Provenance")[0]
    return [
        e["what"]["reference"]
        for e in provenance["entity"]
        if e["what"].get("reference", "").startswith("Observation/")
    ]


def test_parameters_with_two_sessions_is_refused(client, app, plan_id):
    sessions = [
        {"name": "session", "resource": b.session_bundle([3, 2, 1], day(n), care_plan_id=plan_id)}
        for n in (1, 2)
    ]
    before = store_snapshot(app)
    response = client.post(
        f"/fhir/CarePlan/{plan_id}/$submit-session",
        json={"resourceType": "Parameters", "parameter": sessions},
    )
    assert response.status_code == 400, response.text
    assert store_snapshot(app) == before


def test_a_stored_panel_is_decided_once_it_is_final(client, plan_id):
    panel, members = b.session_resources([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    panel["status"] = "preliminary"
    for resource in [*members, panel]:
        put(client, resource)
    assert _decisions(client, plan_id) == 0
    panel["status"] = "final"
    assert client.put(f"/fhir/Observation/{panel['id']}", json=panel).status_code == 200
    assert _decisions(client, plan_id) == 1


def test_a_resubmission_answers_with_the_plan_as_the_decision_left_it(client, plan_id):
    """Later decisions change the CarePlan; the first session's answer stays what it was."""
    first = submit(client, plan_id, [3, 2, 1, 1, 0], day(1)).json()
    provenance = created(first, "Provenance")[0]
    version = part(first, "carePlan")["meta"]["versionId"]
    assert {"reference": f"CarePlan/{plan_id}/_history/{version}"} in provenance["target"]
    submit(client, plan_id, [1, 2, 4, 6], day(2))  # a hold: the plan changes
    again = submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    assert again.json() == first
    # A late session leaves the plan as it is: it answers with the version it read.
    late = submit(client, plan_id, [3, 2, 1, 1, 0], day(2, hour=7)).json()
    submit(client, plan_id, [3, 2, 1, 1, 0], day(12))
    assert submit(client, plan_id, [3, 2, 1, 1, 0], day(2, hour=7)).json() == late


def test_a_refusal_names_the_element_where_the_request_has_it(client, plan_id):
    """422 paths point into the body as sent: Bundle.entry[k] or Parameters...entry[k]."""
    bundle = b.session_bundle([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    bundle["entry"][3]["resource"]["valueQuantity"]["value"] = 12
    response = client.post(f"/fhir/CarePlan/{plan_id}/$submit-session", json=bundle)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == [
        "Bundle.entry[3].resource.valueQuantity.value"
    ]
    wrapped = {
        "resourceType": "Parameters",
        "parameter": [{"name": "session", "resource": bundle}],
    }
    response = client.post(f"/fhir/CarePlan/{plan_id}/$submit-session", json=wrapped)
    assert response.json()["issue"][0]["expression"] == [
        "Parameters.parameter[0].resource.entry[3].resource.valueQuantity.value"
    ]


# --- what makes a session late, and what does not -------------------------------------------


def test_an_evaluation_does_not_make_an_earlier_session_late(client, plan_id):
    """$evaluate re-checks stored data; a session from before it that arrives after it is
    still the plan's newest news, and the stale evaluation drops out of the plan's state."""
    submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    assert _evaluate(client, plan_id, _instant(day(3))).status_code == 200
    rising = submit(client, plan_id, [1, 2, 4, 6], day(2)).json()
    assert decision_codes(rising)[:2] == ["hold-back", "R4"]
    assert created(rising, "Task") and created(rising, "CommunicationRequest")
    assert part(rising, "carePlan")["activity"][0]["detail"]["status"] == "on-hold"
    nxt = submit(client, plan_id, [3, 2, 1, 1, 0], day(4)).json()
    assert decision_codes(nxt)[:2] == ["hold-back", "R11"]


def test_a_newest_decision_entered_in_error_does_not_hide_a_later_one(client, plan_id):
    for n in (30, 32, 33):
        submit(client, plan_id, [3, 2, 1, 1, 0], day(n))
    found = client.get(f"/fhir/GuidanceResponse?result=CarePlan/{plan_id}&_sort=-_lastUpdated")
    newest = found.json()["entry"][0]["resource"]
    newest["status"] = "entered-in-error"
    assert client.put(f"/fhir/GuidanceResponse/{newest['id']}", json=newest).status_code == 200
    plan_before = client.get(f"/fhir/CarePlan/{plan_id}").json()
    late = submit(client, plan_id, [1, 2, 4, 6], day(31)).json()
    assert decision_codes(late)[0] == "hold-back"
    assert not created(late, "Task")  # day 32's decision is newer and stands
    assert client.get(f"/fhir/CarePlan/{plan_id}").json() == plan_before


def test_a_guidance_response_someone_else_wrote_changes_nothing(client, plan_id):
    """Only this service's decisions count; a date-only one is no 500 either."""
    foreign = {
        "resourceType": "GuidanceResponse",
        "status": "success",
        "moduleUri": "https://elsewhere.example/cds",
        "subject": {"reference": f"Patient/{b.PATIENT_ID}"},
        "result": {"reference": f"CarePlan/{plan_id}"},
        "occurrenceDateTime": datetime.now(UTC).date().isoformat(),
    }
    assert client.post("/fhir/GuidanceResponse", json=foreign).status_code == 201
    response = submit(client, plan_id, [1, 2, 4, 6], day(2))
    assert response.status_code == 200, response.text
    assert created(response.json(), "Task")  # not late: the foreign one is no decision


def test_an_ehrs_own_provenance_over_repetitions_does_not_block_the_session(client, plan_id):
    panel, members = b.session_resources([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    for member in members:
        put(client, member)
    ehr = {
        "resourceType": "Provenance",
        "target": [{"reference": f"Observation/{members[0]['id']}"}],
        "recorded": _instant(day(1)),
        "agent": [{"who": {"display": "The EHR"}}],
        "entity": [{"role": "source", "what": {"reference": f"Observation/{members[0]['id']}"}}],
    }
    assert client.post("/fhir/Provenance", json=ehr).status_code == 201
    assert client.put(f"/fhir/Observation/{panel['id']}", json=panel).status_code == 201
    assert _decisions(client, plan_id) == 1


def test_a_plan_whose_flexion_a_clinician_cancelled_takes_no_session(client, app, plan_id):
    plan = client.get(f"/fhir/CarePlan/{plan_id}").json()
    for activity in plan["activity"]:
        activity["detail"]["status"] = "cancelled"
    assert (
        client.put(f"/fhir/CarePlan/{plan_id}", json=plan, headers=if_match(plan)).status_code
        == 200
    )
    before = store_snapshot(app)
    response = submit(client, plan_id, [3, 2, 1, 1, 0], day(1))
    assert response.status_code == 422, response.text
    assert "cancelled" in response.json()["issue"][0]["diagnostics"]
    assert store_snapshot(app) == before


def test_a_panel_and_its_last_repetition_stored_at_once_decide_the_session_once(
    client, app, plan_id
):
    """The repetition's search for its panel and the panel's read of its members each lock
    the patient first, so one of them sees the other's write."""
    for n in range(4):
        panel, members = b.session_resources(
            [3, 2, 1, 1, 0], day(1 + n), care_plan_id=plan_id, sid=f"race-panel-{n}"
        )
        for resource in members[:-1]:
            put(client, resource)
        _store_at_once(app, [panel, members[-1]])
        assert _decisions(client, plan_id) == n + 1, f"session {n}"


def test_a_session_as_observations_needs_careplan_u_like_submit_session(client, app, plan_id):
    """Storing the session's last piece decides it and changes the CarePlan: a token with
    Observation c but not CarePlan u is refused (403) and the transaction changes nothing."""
    bundle = b.session_bundle([3, 2, 1, 1, 0], day(1), care_plan_id=plan_id)
    transaction = copy.deepcopy(bundle)
    transaction["type"] = "transaction"
    for entry in transaction["entry"]:
        entry["request"] = {"method": "POST", "url": "Observation"}
    token = client.tokens.token("system/Observation.crs system/CarePlan.rs")
    before = store_snapshot(app)
    refused = client.post("/fhir", json=transaction, headers={"authorization": f"Bearer {token}"})
    assert refused.status_code == 403, refused.text
    assert store_snapshot(app) == before
    assert client.post("/fhir", json=transaction).status_code == 200  # with CarePlan u
