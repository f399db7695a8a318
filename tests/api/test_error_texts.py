"""Error texts are written for the client: no Python internals.

The class of defect: an exception raised by the standard library or a framework (datetime's
"offset must be a timedelta ... not datetime.timedelta(days=4, ...)", int()'s "use
sys.set_int_max_str_digits()", pydantic's "Value error, ...") passed through str() into an
OperationOutcome's diagnostics. Each request below reaches one place that turns an
exception into diagnostics.
"""

import re
from typing import Any

import pytest

from tests.api.helpers import patient

INTERNALS = re.compile(
    r"timedelta|datetime\.|sys\.|set_int_max_str_digits|Exceeds the limit|Value error,"
    r"|Traceback|object at 0x|<class |must be in \d+\.\.\d+|out of range for month"
    r"|invalid literal|could not convert|NoneType|Errno"
)
FORM = {"content-type": "application/x-www-form-urlencoded"}


def _at(value: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "at", "valueString": value}]}


def _requests(client: Any) -> list[tuple[str, Any]]:
    big_integer = b'{"resourceType": "Patient", "multipleBirthInteger": ' + b"1" * 5000 + b"}"
    return [
        (
            "_since offset",
            client.get("/fhir/_history", params={"_since": "2020-01-01T00:00:00+99:00"}),
        ),
        ("_since day", client.get("/fhir/Patient/_history", params={"_since": "2020-02-30"})),
        (
            "date leap second",
            client.get("/fhir/Observation", params={"date": "2020-01-01T00:00:60Z"}),
        ),
        ("date day", client.get("/fhir/Observation", params={"date": "ge2021-02-29"})),
        (
            "date offset",
            client.get("/fhir/Observation", params={"date": "2020-01-01T00:00:00+23:00"}),
        ),
        ("_lastUpdated", client.get("/fhir/Patient", params={"_lastUpdated": "2020-13"})),
        (
            "form date",
            client.post("/fhir/Patient/_search", content="birthdate=1999-04-31", headers=FORM),
        ),
        (
            "at offset",
            client.post("/fhir/CarePlan/x/$evaluate", json=_at("2020-01-01T00:00:00+99:00")),
        ),
        ("at day", client.post("/fhir/CarePlan/x/$evaluate", json=_at("2021-02-29"))),
        ("integer digits", client.post("/fhir/Patient", content=big_integer)),
        ("bad date", client.post("/fhir/Patient", json={**patient(), "birthDate": "02/03/2024"})),
        ("quantity", client.get("/fhir/Observation", params={"value-quantity": "1e999"})),
    ]


def test_error_texts_show_no_python_internals(client):
    for name, response in _requests(client):
        assert 400 <= response.status_code < 500, (name, response.text)
        body = response.json()
        assert body["resourceType"] == "OperationOutcome", name
        for issue in body["issue"]:
            text = issue["diagnostics"]
            assert not INTERNALS.search(text), (name, text)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"_since": "2020-01-01T00:00:00+99:00"}, "a UTC offset lies between -14:00 and +14:00"),
        ({"_since": "2020-02-30"}, "is not a valid calendar date or time"),
    ],
)
def test_date_errors_say_what_is_wrong(client, params, expected):
    response = client.get("/fhir/_history", params=params)
    assert response.status_code == 400
    assert expected in response.json()["issue"][0]["diagnostics"]
