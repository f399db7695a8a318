"""A typed reference (Condition.subject: Patient | Group) names its target, and the OpenAPI
pattern for it says exactly what the server accepts (schemathesis found "|" accepted by the
server and refused by the schema)."""

import re
from typing import Any

import pytest

from service.api.openapi.components import _reference_pattern
from service.fhir.structure import check_resource

TARGETS = frozenset({"Patient", "Group"})
ACCEPTED = [
    "Patient/p1",
    "Group/g-1.2",
    "Patient/p1/_history/3",
    "https://ehr.example.org/fhir/Patient/p1",
    "Patient/p1|2",
    "#contained",
    "urn:uuid:9b2f3c1e-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
    "opaque-id",
]
REFUSED = [
    "|",  # nothing before the version
    " |1",
    "Observation/o1",  # a type the element does not allow
    "Foo/1",  # not a FHIR type
    "Patient/",  # no id
    "Patient/p1/extra",
    "ftp://ehr.example.org/Patient/p1",
    "a/b",
]


def _condition(reference: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "subject": {"reference": reference},
        "code": {"text": "low back pain"},
    }


def _server_accepts(reference: str) -> bool:
    return not check_resource(_condition(reference))


@pytest.mark.parametrize("reference", ACCEPTED)
def test_the_server_and_the_schema_accept(reference: str) -> None:
    assert _server_accepts(reference)
    assert re.match(_reference_pattern(TARGETS), reference)


@pytest.mark.parametrize("reference", REFUSED)
def test_the_server_and_the_schema_refuse(reference: str) -> None:
    issues = check_resource(_condition(reference))
    assert issues and issues[0].expression == ("Condition.subject.reference",)
    assert not re.match(_reference_pattern(TARGETS), reference)
