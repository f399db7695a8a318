"""Generated clients prove the contract: a Python client from openapi-python-client runs the
whole story against a live server, and a TypeScript client from openapi-typescript compiles
with ``tsc --strict``.

The Python story is a list of steps sharing one ``Story`` state, so later issues append steps.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

from service.api.openapi import examples as schema_examples
from service.auth.token_server import JWT_BEARER_ASSERTION
from service.main import create_app
from service.settings import Settings
from tests.openapi.support import NODE_DIR, OPENAPI, node_tools, run_bin
from tests.support.tokens import ALL_SCOPES, Tokens, client_assertion

pytestmark = pytest.mark.slow
PACKAGE = "careplan_client"
PLAN_DEFINITION_ID = "flexion-in-lying-protocol"
STORY_CLIENT = "story-backend"


def _no_post(_url: str, _form: Any) -> tuple[int, Any]:
    raise AssertionError("the story asks for its token through the generated client")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("client")
    tool = Path(sys.executable).with_name("openapi-python-client")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [
            *(str(tool), "generate", "--path", str(OPENAPI), "--meta", "none"),
            *("--output-path", str(out / PACKAGE)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@dataclass
class Live:
    base: str
    app: Any


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Live]:
    path = tmp_path_factory.mktemp("live") / "careplan.db"
    shutil.copy(sqlite_template, path)
    settings = Settings(database_url=f"sqlite:///{path}", db_connect_retries=0, auth="required")
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        pytest.fail("the live server did not start")
    yield Live(base, app)
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Story:
    """What the steps learn as they go (ids, resources). ``client`` is the generated
    ``Client`` until ``get_token`` makes it an ``AuthenticatedClient``."""

    client: Any
    pkg: ModuleType
    values: dict[str, Any] = field(default_factory=dict)

    def api(self, module: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{module}")

    def model(self, name: str) -> Any:
        return getattr(importlib.import_module(f"{PACKAGE}.models"), name)


def without_a_token_is_typed_401(story: Story) -> None:
    response = story.api("patient.search_patient").sync_detailed(client=story.client)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    outcome = response.parsed
    assert isinstance(outcome, story.model("OperationOutcome"))
    assert outcome.issue[0].code.value == "login"


def get_token(story: Story) -> None:
    """SMART Backend Services through the generated client: a client assertion signed with
    the registered client's key, traded at the token endpoint."""
    import json

    base = story.client._base_url
    assertion = client_assertion(STORY_CLIENT, f"{base}/fhir/auth/token")
    body = story.model("TokenBody").from_dict(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER_ASSERTION,
            "client_assertion": assertion,
            "scope": ALL_SCOPES,
        }
    )
    response = story.api("authorization.token").sync_detailed(client=story.client, body=body)
    assert response.status_code == 200, response.content
    answer = json.loads(response.content)
    assert answer["token_type"] == "bearer" and answer["scope"] == ALL_SCOPES
    story.client = story.pkg.AuthenticatedClient(
        base_url=base, token=answer["access_token"], raise_on_unexpected_status=True
    )


def create_patient(story: Story) -> None:
    patient_input = story.model("PatientInput").from_dict(
        schema_examples.example("Patient")["value"]
    )
    response = story.api("patient.create_patient").sync_detailed(
        client=story.client, body=patient_input
    )
    assert response.status_code == 201, response.content
    patient = response.parsed
    assert isinstance(patient, story.model("Patient"))
    assert patient.id and patient.name[0].family == "Doe"
    assert response.headers["location"].endswith("/_history/1")
    story.values["patient_id"] = patient.id


def read_plan_definition(story: Story) -> None:
    response = story.api("plan_definition.read_plan_definition").sync_detailed(
        PLAN_DEFINITION_ID, client=story.client
    )
    assert response.status_code == 200, response.content
    plan = response.parsed
    assert isinstance(plan, story.model("PlanDefinition"))
    assert plan.status.value == "active" and plan.action
    story.values["plan_url"] = plan.url


def apply_plan_definition(story: Story) -> None:
    response = story.api("plan_definition.apply_plan_definition").sync_detailed(
        PLAN_DEFINITION_ID,
        client=story.client,
        subject=f"Patient/{story.values['patient_id']}",
    )
    assert response.status_code == 200, response.content
    care_plan = response.parsed
    assert isinstance(care_plan, story.model("CarePlan"))
    assert care_plan.subject.reference == f"Patient/{story.values['patient_id']}"
    story.values["applied"] = response.content


def enrol(story: Story) -> None:
    # POST the $apply result as it came (the server's own CarePlan, all its elements), made
    # active: the clinician's decision to enrol.
    import json

    care_plan = json.loads(story.values["applied"])
    care_plan["status"] = "active"
    response = httpx.post(
        f"{story.client._base_url}/fhir/CarePlan",
        content=json.dumps(care_plan),
        headers={
            "content-type": "application/fhir+json",
            "authorization": f"Bearer {story.client.token}",
        },
    )
    assert response.status_code == 201, response.text
    parsed = story.model("CarePlan").from_dict(json.loads(response.content))
    assert parsed.status.value == "active"
    story.values["care_plan_id"] = parsed.id


def _session(story: Story, reps: list[int]) -> dict[str, Any]:
    bundle = schema_examples.example("SessionBundle")["value"]
    patient = f"Patient/{story.values['patient_id']}"
    plan = f"CarePlan/{story.values['care_plan_id']}"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        resource["subject"] = {"reference": patient}
        if "basedOn" in resource:
            resource["basedOn"] = [{"reference": plan}]
    members = [e for e in bundle["entry"] if "hasMember" not in e["resource"]]
    for entry, value in zip(members, reps, strict=True):
        entry["resource"]["valueQuantity"]["value"] = value
    return bundle


def submit_session(story: Story) -> None:
    from datetime import UTC, datetime, timedelta

    bundle = _session(story, [2, 3, 4, 5, 6])
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    panel = bundle["entry"][0]["resource"]
    panel["effectivePeriod"] = {
        "start": (end - timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
        "end": end.isoformat().replace("+00:00", "Z"),
    }
    for index, entry in enumerate(bundle["entry"][1:]):
        moment = end - timedelta(minutes=10) + timedelta(seconds=index)
        entry["resource"]["effectiveDateTime"] = moment.isoformat().replace("+00:00", "Z")
    body = story.model("SessionBundleInput").from_dict(bundle)
    response = story.api("care_plan.submit_session").sync_detailed(
        story.values["care_plan_id"], client=story.client, body=body
    )
    assert response.status_code == 200, response.content
    parameters = response.parsed
    assert isinstance(parameters, story.model("Parameters"))
    names = [p.name for p in parameters.parameter]
    assert names[:2] == ["decision", "carePlan"], names
    decision = parameters.parameter[0].resource
    assert decision.resource_type == "GuidanceResponse"
    story.values["decision_id"] = decision.id


def read_decision_and_plan(story: Story) -> None:
    decision_id = story.values["decision_id"]
    response = story.api("guidance_response.read_guidance_response").sync_detailed(
        decision_id, client=story.client
    )
    assert response.status_code == 200, response.content
    decision = response.parsed
    assert isinstance(decision, story.model("GuidanceResponse"))
    assert decision.status.value in ("success", "data-required")
    plan = story.api("care_plan.read_care_plan").sync_detailed(
        story.values["care_plan_id"], client=story.client
    )
    assert plan.status_code == 200 and plan.parsed.status.value in ("active", "on-hold")


def bad_session_is_typed_outcome(story: Story) -> None:
    bundle = _session(story, [2, 3, 4, 5, 6])
    del bundle["entry"][1:]  # a panel whose repetitions are missing
    body = story.model("SessionBundleInput").from_dict(bundle)
    response = story.api("care_plan.submit_session").sync_detailed(
        story.values["care_plan_id"], client=story.client, body=body
    )
    assert response.status_code in (400, 422), response.content
    outcome = response.parsed
    assert isinstance(outcome, story.model("OperationOutcome"))
    assert outcome.issue[0].severity.value == "error" and outcome.issue[0].diagnostics


def bad_request_is_typed_outcome(story: Story) -> None:
    response = story.api("patient.read_patient").sync_detailed(
        "not a valid id!", client=story.client
    )
    assert response.status_code == 400
    outcome = response.parsed
    assert isinstance(outcome, story.model("OperationOutcome"))
    assert outcome.issue[0].code.value == "invalid"


STEPS: list[Callable[[Story], None]] = [
    without_a_token_is_typed_401,
    get_token,
    create_patient,
    read_plan_definition,
    apply_plan_definition,
    enrol,
    submit_session,
    read_decision_and_plan,
    bad_session_is_typed_outcome,
    bad_request_is_typed_outcome,
]


def test_python_client_story(generated_client: ModuleType, live_server: Live) -> None:
    # The hospital's backend is registered with the built-in authorization server
    # (`careplan clients add` does the same); the story gets its own token.
    tokens = Tokens(live_server.app.state.authorization, _no_post, f"{live_server.base}/fhir")
    tokens.register(STORY_CLIENT, ALL_SCOPES)
    client = generated_client.Client(base_url=live_server.base, raise_on_unexpected_status=False)
    story = Story(client, generated_client)
    for step in STEPS:
        step(story)


def test_typescript_client_compiles(tmp_path: Path) -> None:
    node_tools()
    types = tmp_path / "careplan.d.ts"
    run_bin("openapi-typescript", str(OPENAPI), "--output", str(types))
    program = tmp_path / "use.ts"
    program.write_text(
        'import type { components, paths } from "./careplan";\n'
        'type Patient = components["schemas"]["PatientInput"];\n'
        'const patient: Patient = { resourceType: "Patient", name: [{ family: "Doe" }] };\n'
        'type Read = paths["/fhir/Observation/{id}"]["get"];\n'
        'type Ok = Read["responses"][200]["content"]["application/fhir+json"];\n'
        'const status: Ok["status"] = "final";\n'
        'type Outcome = components["schemas"]["OperationOutcome"];\n'
        'const issue: Outcome["issue"][number]["severity"] = "error";\n'
        "export { patient, status, issue };\n",
        encoding="utf-8",
    )
    run_bin(
        "tsc",
        "--strict",
        "--noEmit",
        "--skipLibCheck",
        "--target",
        "es2022",
        "--moduleResolution",
        "bundler",
        "--module",
        "esnext",
        str(types),
        str(program),
        cwd=NODE_DIR,
    )
