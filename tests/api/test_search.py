"""Search: every declared parameter type, modifiers, prefixes, result parameters and paging."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.helpers import entry_ids, link, outcome_codes, patient, store_snapshot

S = "urn:oid:1.2.36.146.595.217.0.1"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def _create(client, body: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{body['resourceType']}", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _search(client, path: str, params: Any = None, **kwargs: Any) -> dict[str, Any]:
    response = client.get(f"/fhir/{path}", params=params, **kwargs)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def _ids(client, path: str, params: Any) -> set[str]:
    return set(entry_ids(_search(client, path, params)))


def _observation(
    subject: str | None,
    status: str = "final",
    coding: tuple[str, str] = (LOINC, "72514-3"),
    value: tuple[float, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": coding[0], "code": coding[1]}]},
        **extra,
    }
    if subject:
        body["subject"] = {"reference": subject}
    if value is not None:
        body["valueQuantity"] = {
            "value": value[0],
            "unit": value[1],
            "system": UCUM,
            "code": value[1],
        }
    return body


@pytest.fixture
def data(client) -> dict[str, str]:
    """Four patients, four observations (one a panel), three care plans, two plan definitions."""
    ids: dict[str, str] = {}
    ids["pa"] = _create(
        client,
        patient(
            "Smith",
            "1",
            gender="female",
            active=True,
            communication=[{"language": {"text": "English"}}],
        ),
    )
    ids["pb"] = _create(client, patient("Smithson", "2", gender="male", birthDate="1980-06-15"))
    ids["pc"] = _create(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"value": "nosys"}],
            "name": [{"family": "Müller", "given": ["Jörg"]}],
            "birthDate": "1990",
        },
    )
    ids["pd"] = _create(client, patient("O'Brien", "nosys", gender="other"))
    pa, pb = f"Patient/{ids['pa']}", f"Patient/{ids['pb']}"
    ids["o1"] = _create(
        client,
        _observation(pa, value=(3, "{score}"), effectiveDateTime="2026-01-05T10:00:00Z"),
    )
    ids["o2"] = _create(
        client,
        _observation(
            pb, "preliminary", value=(5, "{score}"), effectiveDateTime="2026-02-10T10:00:00Z"
        ),
    )
    ids["o3"] = _create(
        client,
        _observation(
            pa,
            coding=("http://example.org/codes", "pain"),
            value=(8.25, "mm[Hg]"),
            effectiveDateTime="2026-03-15",
        ),
    )
    ids["o4"] = _create(
        client,
        _observation(
            pa,
            "amended",
            coding=("http://example.org/codes", "panel"),
            effectivePeriod={"start": "2026-01-01", "end": "2026-01-31"},
            hasMember=[
                {"reference": f"Observation/{ids['o1']}"},
                {"reference": f"Observation/{ids['o2']}"},
            ],
        ),
    )
    for name, subject, canonical in [
        ("cp1", pa, "https://fhir.example.org/PlanDefinition/proto|1.0.0"),
        ("cp2", pb, "https://fhir.example.org/PlanDefinition/proto|2.0.0"),
        ("cp3", pa, "https://fhir.example.org/PlanDefinition/other"),
    ]:
        ids[name] = _create(
            client,
            {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "subject": {"reference": subject},
                "instantiatesCanonical": [canonical],
            },
        )
    for name, url in [
        ("pd1", "http://example.org/fhir/PlanDefinition/alpha"),
        ("pd2", "http://example.org/fhir/PlanDefinition/alpha-beta"),
    ]:
        ids[name] = _create(
            client,
            {"resourceType": "PlanDefinition", "status": "draft", "url": url, "version": "1"},
        )
    return ids


def _pick(data: dict[str, str], *names: str) -> set[str]:
    return {data[n] for n in names}


# --- token ---------------------------------------------------------------------------------


def test_token_forms(client, data):
    assert _ids(client, "Observation", {"code": f"{LOINC}|72514-3"}) == _pick(data, "o1", "o2")
    assert _ids(client, "Observation", {"code": "72514-3"}) == _pick(data, "o1", "o2")
    assert _ids(client, "Observation", {"code": "http://example.org/codes|"}) == _pick(
        data, "o3", "o4"
    )
    assert _ids(client, "Observation", {"code": "http://other.org|72514-3"}) == set()
    # |code: only identifiers without a system
    assert _ids(client, "Patient", {"identifier": "|nosys"}) == _pick(data, "pc")
    assert _ids(client, "Patient", {"identifier": "nosys"}) == _pick(data, "pc", "pd")
    assert _ids(client, "Patient", {"identifier": f"{S}|"}) == _pick(data, "pa", "pb", "pd")
    assert _ids(client, "Patient", {"identifier": f"{S}|2"}) == _pick(data, "pb")
    assert _ids(client, "Patient", {"active": "true"}) == _pick(data, "pa")
    assert _ids(client, "Patient", {"gender": "female,male"}) == _pick(data, "pa", "pb")


def test_token_missing_and_not(client, data):
    assert _ids(client, "Patient", {"gender:missing": "true"}) == _pick(data, "pc")
    assert _ids(client, "Patient", {"gender:missing": "false"}) == _pick(data, "pa", "pb", "pd")
    assert _ids(client, "Observation", {"status:not": "final"}) == _pick(data, "o2", "o4")
    assert _ids(client, "Observation", {"status:not": "final,amended"}) == _pick(data, "o2")
    assert _ids(client, "Observation", {"has-member:missing": "false"}) == _pick(data, "o4")
    bad = client.get("/fhir/Patient", params={"gender:missing": "maybe"})
    assert bad.status_code == 400
    assert outcome_codes(bad) == ["invalid"]
    unsupported = client.get("/fhir/Patient", params={"gender:text": "female"})
    assert unsupported.status_code == 400
    assert outcome_codes(unsupported) == ["not-supported"]


# --- string --------------------------------------------------------------------------------


def test_string_prefix_exact_contains(client, data):
    assert _ids(client, "Patient", {"name": "smith"}) == _pick(data, "pa", "pb")
    assert _ids(client, "Patient", {"family": "SMITHS"}) == _pick(data, "pb")
    assert _ids(client, "Patient", {"family": "mith"}) == set()  # prefix, not substring
    assert _ids(client, "Patient", {"family:exact": "Smith"}) == _pick(data, "pa")
    assert _ids(client, "Patient", {"family:exact": "smith"}) == set()
    assert _ids(client, "Patient", {"family:contains": "MITH"}) == _pick(data, "pa", "pb")
    assert _ids(client, "Patient", {"family": "muller"}) == _pick(data, "pc")  # accents
    assert _ids(client, "Patient", {"given": "jorg"}) == _pick(data, "pc")
    assert _ids(client, "Patient", {"name": "o'b"}) == _pick(data, "pd")
    assert _ids(client, "PlanDefinition", {"name:missing": "true", "status": "draft"}) == _pick(
        data, "pd1", "pd2"
    )


# --- reference -----------------------------------------------------------------------------


def test_reference_forms(client, data):
    pa = data["pa"]
    expected = _pick(data, "o1", "o3", "o4")
    assert _ids(client, "Observation", {"subject": f"Patient/{pa}"}) == expected
    assert _ids(client, "Observation", {"subject": pa}) == expected
    assert _ids(client, "Observation", {"patient": pa}) == expected
    assert _ids(client, "Observation", {"subject": f"http://testserver/fhir/Patient/{pa}"}) == (
        expected
    )
    assert _ids(client, "Observation", {"subject": "Patient/unknown"}) == set()
    assert _ids(client, "Observation", {"has-member": f"Observation/{data['o1']}"}) == _pick(
        data, "o4"
    )
    assert _ids(client, "CarePlan", {"subject": f"Patient/{data['pb']}"}) == _pick(data, "cp2")


def test_reference_absolute_url_stored(client):
    external = "http://other.example.org/fhir/Patient/ext-1"
    code = ("http://example.org/codes", "note")
    oid = _create(client, _observation(external, coding=code))
    local = _create(client, _observation("Patient/ext-1", coding=code))
    # Another server's Patient/ext-1 is not this server's, in either direction.
    assert _ids(client, "Observation", {"subject": external}) == {oid}
    assert _ids(client, "Observation", {"subject": "Patient/ext-1"}) == {local}
    # An absolute URL under this server's own base names the local resource.
    ours = "http://testserver/fhir/Patient/ext-1"
    assert _ids(client, "Observation", {"subject": ours}) == {local}
    assert _ids(client, "Observation", {"subject": "ext-1"}) == {local}
    bad = client.get("/fhir/Observation", params={"subject": "not/a/reference/at/all"})
    assert bad.status_code == 400


def test_canonical_with_and_without_version(client, data):
    base = "https://fhir.example.org/PlanDefinition/proto"
    param = "instantiates-canonical"
    assert _ids(client, "CarePlan", {param: base}) == _pick(data, "cp1", "cp2")
    assert _ids(client, "CarePlan", {param: f"{base}|1.0.0"}) == _pick(data, "cp1")
    assert _ids(client, "CarePlan", {param: f"{base}|2.0.0"}) == _pick(data, "cp2")
    assert _ids(client, "CarePlan", {param: f"{base}|3.0.0"}) == set()
    assert _ids(client, "CarePlan", {param: "https://fhir.example.org/PlanDefinition/other"}) == (
        _pick(data, "cp3")
    )
    # A canonical is not a local reference: another server's PlanDefinition/proto is different.
    assert _ids(client, "CarePlan", {param: "https://elsewhere.org/PlanDefinition/proto"}) == set()


# --- uri -----------------------------------------------------------------------------------


def test_uri(client, data):
    url = "http://example.org/fhir/PlanDefinition/alpha"
    assert _ids(client, "PlanDefinition", {"url": url}) == _pick(data, "pd1")
    assert _ids(client, "PlanDefinition", {"url": "http://example.org/fhir"}) == set()
    assert _ids(client, "PlanDefinition", {"url:below": "http://example.org/fhir"}) == _pick(
        data, "pd1", "pd2"
    )
    assert _ids(client, "PlanDefinition", {"url": url, "version": "1"}) == _pick(data, "pd1")
    assert _ids(client, "PlanDefinition", {"url": url, "version": "2"}) == set()


# --- date ----------------------------------------------------------------------------------


DATE_CASES = [
    ("2026", ("o1", "o2", "o3", "o4")),
    ("2026-01", ("o1", "o4")),
    ("2026-01-05", ("o1",)),
    ("2026-01-05T11:00:00+01:00", ("o1",)),
    ("eq2026-03-15", ("o3",)),
    ("ne2026-01", ("o2", "o3")),
    ("gt2026-02-01", ("o2", "o3")),
    ("lt2026-01-10", ("o1", "o4")),
    ("ge2026-02-10", ("o2", "o3")),
    ("le2026-01-05", ("o1", "o4")),
    ("sa2026-01-31", ("o2", "o3")),
    ("eb2026-02-01", ("o1", "o4")),
    ("ap2026-02-10", ("o2",)),
    # o4 covers all of January: it is not "on or after" its last day, nor "on or before" its
    # first (R4: the range above/below the value overlaps the target, or contains it).
    ("ge2026-01-31", ("o2", "o3")),
    ("ge2026-01-01", ("o1", "o2", "o3", "o4")),
    ("le2026-01-01", ()),
    ("le2026-01-31", ("o1", "o4")),
    ("gt2026-01-30", ("o2", "o3", "o4")),
    ("lt2026-01-02", ("o4",)),
    ("2025", ()),
    ("2026-02-10,2026-03-15", ("o2", "o3")),
]


def test_date_prefixes_and_partial_dates(client, data):
    wrong = [
        (value, expected)
        for value, expected in DATE_CASES
        if _ids(client, "Observation", {"date": value}) != _pick(data, *expected)
    ]
    assert not wrong, wrong


def test_date_and_and_errors(client, data):
    params = [("date", "ge2026-01-01"), ("date", "lt2026-02-01")]
    assert _ids(client, "Observation", params) == _pick(data, "o1", "o4")
    assert _ids(client, "Patient", {"birthdate": "1990"}) == _pick(data, "pc")
    assert _ids(client, "Patient", {"birthdate": "lt1975"}) == _pick(data, "pa", "pd")
    for bad in ("2024-02-30", "20xx", "ge", "2026-01-05T10:00:00"):
        response = client.get("/fhir/Observation", params={"date": bad})
        assert response.status_code == 400, bad
        assert outcome_codes(response) == ["invalid"]


# --- quantity ------------------------------------------------------------------------------


QUANTITY_CASES = [
    ("3", ("o1",)),
    ("5", ("o2",)),
    ("5.4", ()),  # implicit precision: 5.4 means [5.35, 5.45)
    ("8.3", ("o3",)),  # [8.25, 8.35)
    ("8.2", ()),  # [8.15, 8.25)
    ("gt5", ("o3",)),
    ("gt4", ("o2", "o3")),
    ("lt5", ("o1",)),
    ("ge5", ("o2", "o3")),
    ("le3", ("o1",)),
    ("ne3", ("o2", "o3")),
    ("ap8", ("o3",)),
    ("eq8.25", ("o3",)),
    ("3,5", ("o1", "o2")),
    (f"8.25|{UCUM}|mm[Hg]", ("o3",)),
    (f"3|{UCUM}|mm[Hg]", ()),
    ("gt1||{score}", ("o1", "o2")),
    (f"lt100|{UCUM}|", ("o1", "o2", "o3")),
]


def test_quantity_prefixes_and_units(client, data):
    wrong = [
        (value, expected)
        for value, expected in QUANTITY_CASES
        if _ids(client, "Observation", {"value-quantity": value}) != _pick(data, *expected)
    ]
    assert not wrong, wrong


def test_quantity_errors(client, data):
    for bad in ("abc", "gtx", "nan", "inf", "3|only-system"):
        response = client.get("/fhir/Observation", params={"value-quantity": bad})
        assert response.status_code == 400, bad
        assert outcome_codes(response) == ["invalid"]


# --- _id, _lastUpdated, AND / OR --------------------------------------------------------------


def test_id_and_or(client, data):
    assert _ids(client, "Patient", {"_id": f"{data['pa']},{data['pb']}"}) == _pick(data, "pa", "pb")
    assert _ids(client, "Patient", {"_id": data["o1"]}) == set()  # other type
    both = {"subject": f"Patient/{data['pa']}", "code": f"{LOINC}|72514-3"}
    assert _ids(client, "Observation", both) == _pick(data, "o1")
    either = {"subject": f"Patient/{data['pa']},Patient/{data['pb']}", "status": "final"}
    assert _ids(client, "Observation", either) == _pick(data, "o1", "o3")


def test_last_updated(client):
    old = _create(client, patient("Old"))
    old_time = datetime.fromisoformat(
        client.get(f"/fhir/Patient/{old}").json()["meta"]["lastUpdated"]
    )
    boundary = old_time.replace(microsecond=0) + timedelta(seconds=1)
    while datetime.now(UTC) <= boundary + timedelta(milliseconds=20):
        time.sleep(0.05)
    new = _create(client, patient("New"))
    stamp = boundary.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _ids(client, "Patient", {"_lastUpdated": f"ge{stamp}"}) == {new}
    assert _ids(client, "Patient", {"_lastUpdated": f"gt{stamp}"}) == {new} - _within(
        client, new, boundary
    )
    assert _ids(client, "Patient", {"_lastUpdated": f"lt{stamp}"}) == {old}
    assert _ids(client, "Patient", {"_lastUpdated": f"le{stamp}"}) == {old} | _within(
        client, new, boundary
    )
    assert _ids(client, "Patient", {"_lastUpdated": "gt2000-01-01"}) == {old, new}
    assert _ids(client, "Patient", {"_lastUpdated": "lt2000-01-01"}) == set()
    today = datetime.now(UTC).strftime("%Y")
    assert _ids(client, "Patient", {"_lastUpdated": today}) >= {old, new} - {""}


def _within(client, pid: str, second: datetime) -> set[str]:
    """{pid} when its lastUpdated falls inside the given second (then gt/le treat it as equal)."""
    stamp = datetime.fromisoformat(client.get(f"/fhir/Patient/{pid}").json()["meta"]["lastUpdated"])
    return {pid} if stamp < second + timedelta(seconds=1) else set()


# --- sorting and result parameters ---------------------------------------------------------


def test_sort(client, data):
    created = [data[n] for n in ("pa", "pb", "pc", "pd")]
    assert entry_ids(_search(client, "Patient", {"_sort": "_lastUpdated"})) == created
    assert entry_ids(_search(client, "Patient", {"_sort": "-_lastUpdated"})) == created[::-1]
    ascending = entry_ids(_search(client, "Observation", {"_sort": "date"}))
    assert ascending == [data[n] for n in ("o4", "o1", "o2", "o3")]
    descending = entry_ids(_search(client, "Observation", {"_sort": "-date"}))
    assert descending == [data[n] for n in ("o3", "o2", "o4", "o1")]
    family = entry_ids(_search(client, "Patient", {"_sort": "family"}))
    assert family == [data[n] for n in ("pc", "pd", "pa", "pb")]
    bad = client.get("/fhir/Patient", params={"_sort": "nonsense"})
    assert bad.status_code == 400


def test_count_and_summary(client, data):
    page = _search(client, "Observation", {"_count": "2"})
    assert len(entry_ids(page)) == 2
    assert page["total"] == 4
    assert link(page, "next")
    counted = _search(client, "Observation", {"_summary": "count", "code": "72514-3"})
    assert counted["total"] == 2
    assert "entry" not in counted
    assert link(counted, "self").endswith("/fhir/Observation?_summary=count&code=72514-3")
    summary = _search(client, "Patient", {"_summary": "true", "_id": data["pa"]})
    resource = summary["entry"][0]["resource"]
    assert "communication" not in resource  # not a summary element
    assert resource["name"][0]["family"] == "Smith"
    assert {"code": "SUBSETTED"}.items() <= resource["meta"]["tag"][-1].items()
    elements = _search(client, "Patient", {"_elements": "birthDate", "_id": data["pa"]})
    assert set(elements["entry"][0]["resource"]) == {"resourceType", "id", "meta", "birthDate"}
    zero = _search(client, "Patient", {"_count": "0"})
    assert "entry" not in zero and zero["total"] == 4
    assert client.get("/fhir/Patient", params={"_count": "-1"}).status_code == 400
    assert client.get("/fhir/Patient", params={"_summary": "maybe"}).status_code == 400


def test_include(client, data):
    bundle = _search(client, "Observation", {"_id": data["o1"], "_include": "Observation:subject"})
    assert entry_ids(bundle) == [data["o1"]]
    assert entry_ids(bundle, "include") == [data["pa"]]
    panel = _search(
        client, "Observation", {"_id": data["o4"], "_include": "Observation:has-member"}
    )
    assert entry_ids(panel) == [data["o4"]]
    assert set(entry_ids(panel, "include")) == _pick(data, "o1", "o2")
    plans = _search(client, "CarePlan", {"subject": data["pa"], "_include": "CarePlan:subject"})
    assert set(entry_ids(plans)) == _pick(data, "cp1", "cp3")
    assert entry_ids(plans, "include") == [data["pa"]]  # once, not once per plan
    bad = client.get("/fhir/Observation", params={"_include": "Observation:code"})
    assert bad.status_code == 400
    assert outcome_codes(bad) == ["not-supported"]


def test_include_of_one_target_type(client, data):
    """_include=Type:param:Target adds only the references to that type."""
    patients = _search(
        client, "Observation", {"_id": data["o1"], "_include": "Observation:subject:Patient"}
    )
    assert entry_ids(patients, "include") == [data["pa"]]
    groups = _search(
        client, "Observation", {"_id": data["o1"], "_include": "Observation:subject:Group"}
    )
    assert entry_ids(groups) == [data["o1"]] and entry_ids(groups, "include") == []
    both = _search(
        client,
        "Observation",
        [
            ("_id", data["o4"]),
            ("_include", "Observation:subject:Group"),
            ("_include", "Observation:has-member:Observation"),
        ],
    )
    assert set(entry_ids(both, "include")) == _pick(data, "o1", "o2")
    for value in ("Observation:subject:Encounter", "Observation:subject:Bogus"):
        bad = client.get("/fhir/Observation", params={"_include": value})
        assert bad.status_code == 400, value
        assert outcome_codes(bad) == ["invalid"]


def test_post_search_equals_get(client, data):
    params = {"code": f"{LOINC}|72514-3", "date": "ge2026-01-01", "_sort": "-date"}
    got = _search(client, "Observation", params)
    posted = client.post(
        "/fhir/Observation/_search",
        data=params,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert posted.status_code == 200, posted.text
    assert entry_ids(posted.json()) == entry_ids(got) == [data["o2"], data["o1"]]
    assert posted.json()["total"] == got["total"]
    wrong = client.post("/fhir/Observation/_search", content=b"{}")
    assert wrong.status_code == 415


def test_unknown_params_ignored_and_strict(client, data):
    bundle = _search(client, "Patient", {"family": "Smith", "bogus": "1", "_foo": "x"})
    assert set(entry_ids(bundle)) == _pick(data, "pa", "pb")
    self_link = link(bundle, "self")
    assert "family=Smith" in self_link
    assert "bogus" not in self_link and "_foo" not in self_link
    strict = client.get(
        "/fhir/Patient",
        params={"family": "Smith", "bogus": "1"},
        headers={"Prefer": "handling=strict"},
    )
    assert strict.status_code == 400
    assert outcome_codes(strict) == ["not-supported"]
    lenient = client.get(
        "/fhir/Patient", params={"bogus": "1"}, headers={"Prefer": "handling=lenient"}
    )
    assert lenient.status_code == 200


METACHARACTERS = ["' OR 1=1 --", "%", "_", "\\", "%'; DROP TABLE resource; --", '"', "*"]


def test_sql_metacharacters_match_nothing(client, app, data):
    before = store_snapshot(app)
    for value, (path, param) in [
        (v, t)
        for v in METACHARACTERS
        for t in [
            ("Patient", "name"),
            ("Patient", "family:contains"),
            ("Patient", "family:exact"),
            ("Patient", "identifier"),
            ("Patient", "_id"),
            ("Observation", "subject"),
            ("PlanDefinition", "url:below"),
            ("PlanDefinition", "url"),
        ]
    ]:
        response = client.get(f"/fhir/{path}", params={param: value})
        assert response.status_code in (200, 400), (param, response.text)
        if response.status_code == 200:
            assert entry_ids(response.json()) == [], (param, value)
        else:
            assert response.json()["resourceType"] == "OperationOutcome"
    assert store_snapshot(app) == before


# --- paging ----------------------------------------------------------------------------------


def _walk(client, url: str, relation: str = "next") -> list[list[str]]:
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.text
        bundle = response.json()
        pages.append(entry_ids(bundle))
        url = link(bundle, relation)
        assert len(pages) < 50, "paging does not end"
    return pages


def test_paging_walks_everything_once(client):
    ids = []
    for i in range(7):
        ids.append(_create(client, patient(f"Fam{i}", str(i), birthDate=f"19{50 + i % 3}-01-01")))
    expected = {
        None: ids,
        "_lastUpdated": ids,
        "-_lastUpdated": ids[::-1],
        "family": ids,
        "-birthdate": [ids[i] for i in (2, 5, 1, 4, 0, 3, 6)],  # ties keep creation order
        "_id": sorted(ids),
    }
    for sort, order in expected.items():
        _check_walk(client, order, sort)


def _check_walk(client, order: list[str], sort: str | None) -> None:
    params = {"_count": "3"} | ({"_sort": sort} if sort else {})
    full = entry_ids(_search(client, "Patient", params | {"_count": "100"}))
    assert full == order, sort
    pages = _walk(client, f"/fhir/Patient?{_query(params)}")
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == full
    # previous walks back from the last page to the first
    last_page_url = _last_url(client, f"/fhir/Patient?{_query(params)}")
    backwards = _walk(client, last_page_url, "previous")
    assert backwards == pages[::-1]


def _query(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def _last_url(client, url: str) -> str:
    while True:
        bundle = client.get(url).json()
        nxt = link(bundle, "next")
        if not nxt:
            return url
        url = nxt


@pytest.mark.parametrize("sort", [None, "family", "-family", "_lastUpdated"])
def test_paging_stays_correct_while_data_changes(client, sort):
    names = ["B", "C", "D", "E", "F", "G", "H"]
    ids = {n: _create(client, patient(n)) for n in names}
    params = {"_count": "3"} | ({"_sort": sort} if sort else {})
    first = _search(client, "Patient", params)
    seen = entry_ids(first)
    order = entry_ids(_search(client, "Patient", params | {"_count": "100"}))
    assert seen == order[:3]
    # Write between page requests: one before the cursor, one after, delete one not yet seen,
    # update one not yet seen (its sort position stays put except for _lastUpdated).
    ids["A"] = _create(client, patient("A"))
    ids["Z"] = _create(client, patient("Z"))
    unseen = [i for i in order if i not in seen]
    deleted, updated = unseen[1], unseen[0]
    assert client.delete(f"/fhir/Patient/{deleted}").status_code == 204
    body = client.get(f"/fhir/Patient/{updated}").json()
    assert client.put(f"/fhir/Patient/{updated}", json={**body, "active": True}).status_code == 200
    rest = _walk(client, link(first, "next"))
    walked = seen + [i for p in rest for i in p]
    assert len(walked) == len(set(walked)), "a resource was returned twice"
    assert deleted not in walked
    survivors = {ids[n] for n in names} - {deleted}
    assert survivors <= set(walked), "a resource that existed throughout was skipped"
    # The original rows come in sort order (an update moves a row only in _lastUpdated order).
    moved = {updated} if sort == "_lastUpdated" else set()
    originals = [i for i in walked if i in survivors - moved]
    assert originals == [i for i in order if i in survivors - moved]
    # New rows sorting before the cursor never appear; those after it do, at their place.
    if sort in (None, "_lastUpdated"):
        assert walked[-2:] == [ids["A"], ids["Z"]] or walked[-3:-1] == [ids["A"], ids["Z"]]
    elif sort == "family":
        assert ids["A"] not in walked and walked[-1] == ids["Z"]
    else:
        assert ids["Z"] not in walked and walked[-1] == ids["A"]


def test_paging_cursor_is_validated(client, data):
    bad = client.get("/fhir/Patient", params={"_cursor": "not-a-cursor"})
    assert bad.status_code == 400
    assert outcome_codes(bad) == ["invalid"]
    page = _search(client, "Patient", {"_count": "1", "_sort": "family"})
    cursor = link(page, "next").split("_cursor=")[1]
    # A cursor made for one sort does not silently apply to another.
    other = client.get("/fhir/Patient", params={"_count": "1", "_cursor": cursor})
    assert other.status_code == 400


def test_patient_and_date_together(client):
    """patient + date (the per-patient date index) agrees with each criterion on its own."""
    code = ("http://example.org/codes", "note")
    mine = _create(client, _observation("Patient/p1", coding=code, effectiveDateTime="2026-01-05"))
    _create(client, _observation("Patient/p2", coding=code, effectiveDateTime="2026-01-05"))
    external = "http://other.example.org/fhir/Patient/p1"
    _create(client, _observation(external, coding=code, effectiveDateTime="2026-01-05"))
    old = _create(client, _observation("Patient/p1", coding=code, effectiveDateTime="2020-01-05"))
    for patient_param in ("patient", "subject"):
        for value in ("Patient/p1", "p1"):
            params = [(patient_param, value), ("date", "ge2026-01-01")]
            assert _ids(client, "Observation", params) == {mine}, params
            params = [(patient_param, value), ("date", "ge2019"), ("date", "lt2026")]
            assert _ids(client, "Observation", params) == {old}, params
    # A resource in two patients' compartments is found from either patient.
    provenance = _create(
        client,
        {
            "resourceType": "Provenance",
            "target": [{"reference": "Patient/p1"}, {"reference": "Patient/p2"}],
            "recorded": "2026-01-05T10:00:00Z",
            "agent": [{"who": {"display": "probe"}}],
        },
    )
    for target in ("Patient/p1", "Patient/p2"):
        params = {"patient": target, "recorded": "ge2026-01-01"}
        assert _ids(client, "Provenance", params) == {provenance}, params
        assert _ids(client, "Provenance", {"patient": target}) == {provenance}


def test_reference_identifier_modifier(client):
    """`param:identifier=system|value` matches a Reference by its identifier (R4 search); a
    parameter limited to Patient takes only references that say they are to a Patient."""
    mrn = {"system": "urn:example:mrn", "value": "MRN-77"}
    typed = _create(
        client,
        {
            "resourceType": "Condition",
            "subject": {"identifier": mrn, "type": "Patient"},
            "code": {"text": "low back pain"},
        },
    )
    untyped = _create(
        client,
        {
            "resourceType": "Condition",
            "subject": {"identifier": {**mrn, "value": "MRN-78"}},
            "code": {"text": "low back pain"},
        },
    )
    assert _ids(client, "Condition", {"subject:identifier": "urn:example:mrn|MRN-77"}) == {typed}
    assert _ids(client, "Condition", {"subject:identifier": "MRN-78"}) == {untyped}
    both = {"subject:identifier": "urn:example:mrn|MRN-77,urn:example:mrn|MRN-78"}
    assert _ids(client, "Condition", both) == {typed, untyped}
    assert _ids(client, "Condition", {"patient:identifier": "urn:example:mrn|MRN-77"}) == {typed}
    assert _ids(client, "Condition", {"patient:identifier": "urn:example:mrn|MRN-78"}) == set()
    assert _ids(client, "Condition", {"subject:identifier": "other|MRN-77"}) == set()
    # The modifier reads identifiers only: a reference by id is not an identifier.
    assert _ids(client, "Condition", {"subject:identifier": "Patient/x"}) == set()
