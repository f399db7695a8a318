"""Every CDS Hooks call, discovery included, carries the EHR's signed JWT when JWTs are
required: 401 with an OperationOutcome for a missing, unknown-issuer, expired, wrongly
addressed, replayed or HMAC-signed one, nothing stored; a jti works once on every replica."""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from joserfc import jwk, jwt
from joserfc.jwk import ECKey, OctKey

from service.api.audit import CDS_HOOKS
from service.main import StartupError, create_app
from service.settings import Settings
from service.store.tables import used_jti
from tests.api.cds.helpers import (
    PATIENT_VIEW,
    cards_of,
    eligible,
    full_prefetch,
    hook_body,
    outcome,
    owned,
    patient,
)
from tests.api.helpers import audit_events, store_snapshot
from tests.conftest import FhirClient

EHR = "https://ehr.example.org"
ROOT = "http://testserver"


@pytest.fixture(scope="module")
def ehr_key() -> ECKey:
    return jwk.generate_key("EC", "P-384", parameters={"kid": "ehr-2026"})


@pytest.fixture
def cds_settings(ehr_key: ECKey) -> dict[str, Any]:
    jwks = {"keys": [ehr_key.as_dict(private=False)]}
    return {"cds_clients": json.dumps([{"issuer": EHR, "jwks": jwks}])}


@pytest.fixture(autouse=True)
def _each_test_signs_its_own_calls(client: Any) -> None:
    client.sign_calls = False


def token(key: Any, audience: str, *, alg: str = "ES384", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": EHR, "aud": audience, "iat": now, "exp": now + 120, "jti": str(uuid.uuid4())}
    payload.update(claims)
    header = {"alg": alg, "typ": "JWT", "kid": key.kid or "ehr-2026"}
    return jwt.encode(header, payload, key, algorithms=[alg])


def auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _jtis(app: Any) -> int:
    with app.state.store.engine.connect() as connection:
        return int(
            connection.execute(sa.select(sa.func.count()).select_from(used_jti)).scalar_one()
        )


def _body() -> dict[str, Any]:
    ehr_patient = patient("ehr-sec", "sec-1")
    return hook_body(
        PATIENT_VIEW, "ehr-sec", prefetch=full_prefetch(ehr_patient, owned(eligible(), "ehr-sec"))
    )


def test_discovery_needs_the_jwt_for_its_own_url(client, ehr_key) -> None:
    refused = client.get("/cds-services")
    outcome(refused, 401)
    assert refused.headers["www-authenticate"].startswith(
        'Bearer realm="flexion-careplan", error="invalid_token"'
    )
    assert (
        client.get(
            "/cds-services", headers=auth(token(ehr_key, f"{ROOT}/cds-services"))
        ).status_code
        == 200
    )


def test_a_signed_call_is_answered(client, r4_validator, ehr_key) -> None:
    url = f"/cds-services/{PATIENT_VIEW}"
    answer = client.post(url, json=_body(), headers=auth(token(ehr_key, ROOT + url)))
    assert len(cards_of(answer, r4_validator)) == 1


@pytest.mark.parametrize(
    ("why", "make"),
    [
        ("no token", lambda key, url: None),
        ("unknown issuer", lambda key, url: token(key, url, iss="https://stranger.example.org")),
        ("expired", lambda key, url: token(key, url, exp=int(time.time()) - 120)),
        ("exp too far ahead", lambda key, url: token(key, url, exp=int(time.time()) + 900)),
        ("another aud", lambda key, url: token(key, f"{ROOT}/cds-services")),
        ("aud of the feedback URL", lambda key, url: token(key, url + "/feedback")),
        (
            "HMAC",
            lambda key, url: jwt.encode(
                {"alg": "HS256", "kid": "ehr-2026"},
                {"iss": EHR, "aud": url, "exp": int(time.time()) + 60, "jti": "h"},
                OctKey.generate_key(256),
                algorithms=["HS256"],
            ),
        ),
        (
            "another key",
            lambda key, url: token(
                jwk.generate_key("EC", "P-384", parameters={"kid": "ehr-2026"}), url
            ),
        ),
        (
            "jku not allowed",
            lambda key, url: jwt.encode(
                {"alg": "ES384", "kid": "ehr-2026", "jku": "https://attacker.example/jwks"},
                {"iss": EHR, "aud": url, "exp": int(time.time()) + 60, "jti": str(uuid.uuid4())},
                key,
                algorithms=["ES384"],
            ),
        ),
    ],
)
def test_refused_tokens_are_401_and_store_nothing(client, app, ehr_key, why, make) -> None:
    url = f"/cds-services/{PATIENT_VIEW}"
    value = make(ehr_key, ROOT + url)
    before, jtis = store_snapshot(app), _jtis(app)
    answer = client.post(url, json=_body(), headers=auth(value) if value else {})
    issues = outcome(answer, 401)
    assert issues[0]["code"] == "login"
    assert answer.headers["www-authenticate"].startswith(
        'Bearer realm="flexion-careplan", error="invalid_token"'
    )
    assert store_snapshot(app) == before and _jtis(app) == jtis


def test_a_replayed_token_is_refused(client, app, ehr_key) -> None:
    url = f"/cds-services/{PATIENT_VIEW}"
    value = token(ehr_key, ROOT + url)
    assert client.post(url, json=_body(), headers=auth(value)).status_code == 200
    issues = outcome(client.post(url, json=_body(), headers=auth(value)), 401)
    assert "already used" in issues[0]["diagnostics"]


def test_feedback_needs_a_jwt_for_the_feedback_url(client, ehr_key) -> None:
    url = f"/cds-services/{PATIENT_VIEW}/feedback"
    body = {
        "feedback": [
            {
                "card": str(uuid.uuid4()),
                "outcome": "overridden",
                "outcomeTimestamp": "2026-01-02T03:04:05Z",
            }
        ]
    }
    outcome(
        client.post(
            url, json=body, headers=auth(token(ehr_key, f"{ROOT}/cds-services/{PATIENT_VIEW}"))
        ),
        401,
    )
    assert client.post(url, json=body, headers=auth(token(ehr_key, ROOT + url))).status_code == 200


def test_a_jti_works_once_across_replicas(settings, ehr_key) -> None:
    """Two processes on one database (two apps, two engines): a token one accepted, the
    other refuses."""
    url = f"/cds-services/{PATIENT_VIEW}"
    value = token(ehr_key, ROOT + url)
    with FhirClient(create_app(settings)) as first, FhirClient(create_app(settings)) as second:
        assert first.post(url, json=_body(), headers=auth(value)).status_code == 200
        outcome(second.post(url, json=_body(), headers=auth(value)), 401)


@pytest.fixture
def public(settings: Settings) -> Iterator[FhirClient]:
    """The service behind a proxy at https://cds.example.org (CAREPLAN_BASE_URL)."""
    configured = settings.model_copy(update={"base_url": "https://cds.example.org/fhir"})
    with FhirClient(create_app(configured)) as client:
        yield client


def test_behind_a_proxy_the_aud_is_the_public_url(public, ehr_key) -> None:
    url = f"/cds-services/{PATIENT_VIEW}"
    outcome(public.post(url, json=_body(), headers=auth(token(ehr_key, ROOT + url))), 401)
    good = token(ehr_key, f"https://cds.example.org{url}")
    assert public.post(url, json=_body(), headers=auth(good)).status_code == 200


def test_each_call_and_each_refusal_is_audited(client, app, ehr_key) -> None:
    url = f"/cds-services/{PATIENT_VIEW}"
    before = len(audit_events(app))
    signed = token(ehr_key, ROOT + url)
    assert client.post(url, json=_body(), headers=auth(signed)).status_code == 200
    outcome(client.post(url, json=_body(), headers=auth(signed)), 401)  # replayed
    new = audit_events(app)[before:]
    assert [event["outcome"] for event in new] == ["0", "4"]
    for event in new:
        assert {"system": CDS_HOOKS, "code": PATIENT_VIEW, "display": f"${PATIENT_VIEW}"} in (
            event["subtype"]
        )
        assert signed not in json.dumps(event)
    assert new[0]["agent"][0]["who"]["identifier"] == {"system": EHR, "value": EHR}
    assert "jti" in new[0]["agent"][0]["policy"][0]
    assert new[1]["agent"][0]["who"] == {"display": "no verified access token"}
    assert "replayed" in new[1]["outcomeDesc"] or "jti" in new[1]["outcomeDesc"]


def test_the_jwt_follows_careplan_auth(database_url) -> None:
    """Open exactly when the FHIR API is (CAREPLAN_AUTH); each call leaves an AuditEvent."""
    settings = Settings(database_url=database_url, db_connect_retries=0, auth="off")
    with FhirClient(create_app(settings)) as client:
        assert client.get("/cds-services").status_code == 200
    settings = Settings(database_url=database_url, db_connect_retries=0, auth="required")
    with FhirClient(create_app(settings)) as client:
        outcome(client.get("/cds-services"), 401)


def test_auto_requires_the_jwt_off_loopback(database_url) -> None:
    settings = Settings(database_url=database_url, db_connect_retries=0, host="0.0.0.0")
    with FhirClient(create_app(settings)) as client:
        outcome(client.get("/cds-services"), 401)


def test_a_bad_client_list_stops_start_up(database_url) -> None:
    settings = Settings(database_url=database_url, db_connect_retries=0, cds_clients="[{]")
    with (
        pytest.raises(StartupError, match="CDS Hooks settings: CDS clients: not JSON"),
        FhirClient(create_app(settings)),
    ):
        pass
