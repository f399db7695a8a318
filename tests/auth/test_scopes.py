"""SMART scope grammar (v1 and v2), matching, restrictions and granting."""

import pytest

from service.auth.scopes import ScopeSet, grant, parse_scope

LOINC_PAIN = "http://loinc.org|72514-3"
PAIN_OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "survey",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
    "subject": {"reference": "Patient/p1"},
}


@pytest.mark.parametrize(
    ("text", "letters"),
    [
        ("patient/Observation.rs", "rs"),
        ("user/CarePlan.cruds", "cruds"),
        ("system/*.c", "c"),
        ("system/Patient.d", "d"),
        ("patient/Observation.read", "rs"),
        ("user/CarePlan.write", "cud"),
        ("system/*.*", "cruds"),
    ],
)
def test_v1_and_v2_scopes_parse_to_their_letters(text: str, letters: str) -> None:
    scope = parse_scope(text)
    assert scope is not None
    assert scope.permissions == frozenset(letters)
    assert str(scope) == text


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.sr",  # letters out of order
        "patient/Observation.rr",  # a letter twice
        "patient/Observation.x",
        "patient/Observation.",
        "clinic/Observation.rs",  # unknown context
        "patient/observation.rs",  # types start upper-case
        "patient/Observation.read?code=x",  # restrictions are v2 only
        "patient/Observation.rs?code:in=http://vs",  # modifiers are not understood
        "patient/Observation.rs?subject.name=x",  # nor chains
        "patient/Observation.rs?code=",  # nor empty values
        "launch/patient",
        "openid",
    ],
)
def test_malformed_and_other_scopes_parse_to_nothing(text: str) -> None:
    assert parse_scope(text) is None


def test_a_scope_string_keeps_what_it_ignores() -> None:
    scopes = ScopeSet.parse("launch system/Observation.rs patient/Observation.bogus")
    assert [str(s) for s in scopes.scopes] == ["system/Observation.rs"]
    assert scopes.ignored == ("launch", "patient/Observation.bogus")


def test_scope_claim_and_scp_list_are_both_read() -> None:
    from_scope = ScopeSet.from_claims({"scope": "system/CarePlan.r system/Patient.s"})
    from_scp = ScopeSet.from_claims({"scp": ["system/CarePlan.r", "system/Patient.s", 7]})
    assert [str(s) for s in from_scope.scopes] == ["system/CarePlan.r", "system/Patient.s"]
    assert from_scp.scopes == from_scope.scopes
    assert from_scp.ignored == ("<not a string>",)


def test_no_scope_claim_means_no_scopes() -> None:
    assert ScopeSet.from_claims({"sub": "x"}) == ScopeSet()


def test_v1_read_allows_read_and_search_only() -> None:
    scopes = ScopeSet.parse("patient/Observation.read")
    assert scopes.matching("r", "Observation")
    assert scopes.matching("s", "Observation")
    assert not scopes.matching("c", "Observation")
    assert not scopes.matching("u", "Observation")
    assert not scopes.matching("r", "CarePlan")


def test_v1_write_allows_create_update_delete_but_not_read() -> None:
    scopes = ScopeSet.parse("system/CarePlan.write")
    assert [letter for letter in "cruds" if scopes.matching(letter, "CarePlan")] == [
        "c",
        "u",
        "d",
    ]


def test_wildcard_type_matches_every_type() -> None:
    scopes = ScopeSet.parse("system/*.rs")
    assert scopes.matching("r", "Observation")
    assert scopes.matching("s", "AuditEvent")
    assert not scopes.matching("c", "Observation")


def test_restriction_on_code_matches_the_coded_resource_only() -> None:
    scope = parse_scope(f"patient/Observation.rs?code={LOINC_PAIN}")
    assert scope is not None
    other_code = {
        **PAIN_OBSERVATION,
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    }
    assert scope.restriction.matches(PAIN_OBSERVATION)
    assert not scope.restriction.matches(other_code)
    assert not scope.restriction.matches({"resourceType": "Observation"})  # no code at all


def test_restriction_is_url_decoded() -> None:
    scope = parse_scope("patient/Observation.rs?code=http%3A%2F%2Floinc.org%7C72514-3")
    assert scope is not None
    assert scope.restriction.params == (("code", LOINC_PAIN),)
    assert scope.restriction.matches(PAIN_OBSERVATION)


def test_restriction_on_category_list() -> None:
    survey = parse_scope(
        "patient/Observation.rs?category="
        "http://terminology.hl7.org/CodeSystem/observation-category|survey"
    )
    laboratory = parse_scope(
        "patient/Observation.rs?category="
        "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    )
    assert survey is not None and laboratory is not None
    assert survey.restriction.matches(PAIN_OBSERVATION)
    assert not laboratory.restriction.matches(PAIN_OBSERVATION)


@pytest.mark.parametrize(
    ("value", "matches"),
    [
        ("72514-3", True),  # any system
        ("http://loinc.org|", True),  # any code of the system
        ("http://snomed.info/sct|", False),
        ("|72514-3", False),  # the coding has a system
        ("8867-4,72514-3", True),  # alternatives
        ("8867-4,1-8", False),
    ],
)
def test_token_forms_of_a_restriction(value: str, matches: bool) -> None:
    scope = parse_scope(f"patient/Observation.rs?code={value}")
    assert scope is not None
    assert scope.restriction.matches(PAIN_OBSERVATION) is matches


def test_restriction_pairs_must_all_hold() -> None:
    scope = parse_scope(f"patient/Observation.rs?code={LOINC_PAIN}&status=final")
    assert scope is not None
    assert scope.restriction.matches(PAIN_OBSERVATION)
    assert not scope.restriction.matches({**PAIN_OBSERVATION, "status": "amended"})


def test_restriction_on_a_plain_code_element_and_on_meta_tag() -> None:
    by_status = parse_scope("system/Task.rs?status=requested")
    by_tag = parse_scope("system/Task.rs?_tag=http://example.org/tags|flexion")
    task = {
        "resourceType": "Task",
        "status": "requested",
        "meta": {"tag": [{"system": "http://example.org/tags", "code": "flexion"}]},
    }
    assert by_status is not None and by_tag is not None
    assert by_status.restriction.matches(task)
    assert by_tag.restriction.matches(task)
    assert not by_tag.restriction.matches({**task, "meta": {}})


def test_kebab_case_parameter_names_a_camel_case_element() -> None:
    scope = parse_scope("patient/Observation.rs?body-site=37822005")
    assert scope is not None
    assert scope.restriction.matches(
        {"resourceType": "Observation", "bodySite": {"coding": [{"code": "37822005"}]}}
    )


def test_escaped_separators_are_literal() -> None:
    scope = parse_scope(r"system/Observation.rs?code=a\,b")
    assert scope is not None
    assert scope.restriction.matches({"code": {"coding": [{"code": "a,b"}]}})
    assert not scope.restriction.matches({"code": {"coding": [{"code": "a"}]}})


def test_grant_keeps_a_request_inside_a_wildcard_allowance() -> None:
    assert grant("patient/Observation.rs", "patient/*.cruds") == ("patient/Observation.rs",)


def test_grant_narrows_to_the_allowed_letters() -> None:
    assert grant("patient/Observation.rs", "patient/Observation.r") == ("patient/Observation.r",)


def test_grant_of_nothing_allowed_is_empty() -> None:
    assert grant("patient/Observation.rs", "system/*.cruds patient/CarePlan.r") == ()
    assert grant("launch openid", "system/*.cruds") == ()


def test_grant_subset_of_several_requested() -> None:
    granted = grant(
        "system/Observation.cruds system/CarePlan.rs system/AuditEvent.rs",
        "system/Observation.rs system/CarePlan.cruds",
    )
    assert granted == ("system/Observation.rs", "system/CarePlan.rs")


def test_grant_of_a_wildcard_request_names_the_allowed_types() -> None:
    assert grant("system/*.rs", "system/CarePlan.cruds system/Patient.r") == (
        "system/CarePlan.rs",
        "system/Patient.r",
    )


def test_grant_answers_v1_in_v1_when_it_can() -> None:
    assert grant("system/Observation.read", "system/*.*") == ("system/Observation.read",)
    assert grant("system/Observation.read", "system/*.r") == ("system/Observation.r",)


def test_grant_carries_the_allowed_restriction() -> None:
    granted = grant("patient/Observation.rs", f"patient/Observation.rs?code={LOINC_PAIN}")
    assert granted == (f"patient/Observation.rs?code={LOINC_PAIN}",)
    scopes = ScopeSet.parse(granted)
    assert scopes.scopes[0].restriction.matches(PAIN_OBSERVATION)
