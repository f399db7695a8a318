"""The service's own search parameters are published as SearchParameter resources: stored at
start-up, readable and searchable, and named by the CapabilityStatement's definition."""

from service.wiring import NON_SESSION_DATE


def test_non_session_date_is_published_and_declared(client):
    url = NON_SESSION_DATE.definition
    assert url is not None
    found = client.get("/fhir/SearchParameter", params={"url": url}).json()
    assert found["total"] == 1
    published = found["entry"][0]["resource"]
    assert (published["code"], published["type"], published["base"]) == (
        "non-session-date",
        "date",
        ["Observation"],
    )
    read = client.get(f"/fhir/SearchParameter/{published['id']}")
    assert read.status_code == 200 and read.json()["url"] == url
    rest = client.get("/fhir/metadata").json()["rest"][0]
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    declared = next(p for p in observation["searchParam"] if p["name"] == "non-session-date")
    assert declared["definition"] == url
    searchable = next(r for r in rest["resource"] if r["type"] == "SearchParameter")
    assert {"code", "base", "type", "url"} <= {p["name"] for p in searchable["searchParam"]}
    by_code = client.get("/fhir/SearchParameter", params={"code": "non-session-date"}).json()
    assert [e["resource"]["url"] for e in by_code["entry"]] == [url]
