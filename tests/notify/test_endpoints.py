"""The endpoint allow-list compares URL parts, not text."""

import pytest

from service.notify import endpoints

PREFIXES = endpoints.parse_prefixes(
    "https://sched.example.org/hooks/, http://127.0.0.1:8080/fhir-hook"
)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://sched.example.org/hooks/careplan", True),
        ("https://SCHED.example.org:443/hooks/a/b?x=1", True),
        ("http://127.0.0.1:8080/fhir-hook", True),
        ("http://127.0.0.1:8080/fhir-hook/x", True),
        ("http://127.0.0.1:8080/fhir-hookx", False),  # not under the prefix's path
        ("https://sched.example.org.evil.net/hooks/x", False),  # another host
        ("https://sched.example.org/other", False),
        ("http://sched.example.org/hooks/x", False),  # another scheme
        ("https://sched.example.org:8443/hooks/x", False),  # another port
        ("http://127.0.0.1:8081/fhir-hook", False),
        ("https://user:pw@sched.example.org/hooks/x", False),  # credentials in the URL
        ("ftp://sched.example.org/hooks/x", False),
        ("/hooks/x", False),
        # Dot segments leave the prefix once an HTTP client resolves them.
        ("https://sched.example.org/hooks/../admin", False),
        ("https://sched.example.org/hooks/%2e%2e/admin", False),
        ("https://sched.example.org/hooks/.%2E/admin", False),
        ("https://sched.example.org/hooks/./x", False),
        ("https://sched.example.org/hooks/a..b", True),  # only whole segments count
    ],
)
def test_only_urls_under_a_prefix_are_allowed(url: str, allowed: bool) -> None:
    assert endpoints.allowed(url, PREFIXES) is allowed


def test_nothing_is_allowed_by_default() -> None:
    assert endpoints.parse_prefixes("") == ()
    assert not endpoints.allowed("https://sched.example.org/hooks/x", ())


def test_problems_name_what_is_wrong() -> None:
    assert endpoints.problem("https://a.example/x") is None
    assert "absolute" in (endpoints.problem("a.example/x") or "")
    assert "credentials" in (endpoints.problem("https://u:p@a.example/x") or "")
    assert "fragment" in (endpoints.problem("https://a.example/x#y") or "")
