"""The CDS Hooks shape checker (tests/support/cds_shapes.py) is itself right: it accepts the
specification's own examples and finds each kind of mistake in a changed copy."""

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cds_shapes import check, model

EXAMPLES = Path(__file__).resolve().parent / "support" / "cds_hooks" / "examples"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("discovery", "CDSHooksServices"),
        ("response", "CDSHooksResponse"),
        ("feedback-accepted", "CDSHooksFeedback"),
        ("feedback-overridden", "CDSHooksFeedback"),
        ("feedback-overridden-with-reason", "CDSHooksFeedback"),
    ],
)
def test_the_specification_examples_conform(name: str, kind: str) -> None:
    assert check(kind, example(name)) == []


def test_the_autolaunchable_example_lacks_only_its_indicator() -> None:
    """The specification's own example omits a REQUIRED field; the checker says just that."""
    assert check("CDSHooksResponse", example("response-autolaunchable")) == [
        "CDSHooksResponse.cards[0].indicator: required"
    ]


def test_the_models_are_read() -> None:
    response = model("CDSHooksResponse")
    assert response["cards.summary"].min == 1
    assert response["cards.indicator"].binding == {"info", "warning", "critical"}
    assert response["cards"].invariants == ["cds-resp-1", "cds-resp-6"]
    assert response["cards"].may_be_empty
    assert response["systemActions.type"].binding == {"create", "update", "delete"}
    assert model("CDSHooksServices")["services.prefetch"].keyed


def _suggesting_card() -> dict[str, Any]:
    return {
        "cards": [
            {
                "uuid": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
                "summary": "Enrol",
                "indicator": "info",
                "source": {"label": "A service"},
                "selectionBehavior": "at-most-one",
                "suggestions": [
                    {
                        "label": "Do it",
                        "uuid": "e56e1945-20b3-4393-8503-a1a20fd73152",
                        "actions": [
                            {
                                "type": "create",
                                "description": "Create it",
                                "resource": {"resourceType": "CarePlan"},
                            }
                        ],
                    }
                ],
            }
        ]
    }


Change = Callable[[dict[str, Any]], None]


def _set(path: list[Any], value: Any) -> Change:
    def change(document: dict[str, Any]) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return change


_DELETE = object()
CARD = ["cards", 0]
ACTION = [*CARD, "suggestions", 0, "actions", 0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_set([*CARD, "summary"], "x" * 140), "a summary is under 140"),
        (_set([*CARD, "indicator"], "error"), "is not one of"),
        (_set([*CARD, "indicator"], _DELETE), "indicator: required"),
        (_set([*CARD, "source"], {"url": "https://cds.example.org"}), "label: required"),
        (_set([*CARD, "selectionBehavior"], _DELETE), "cds-resp-6"),
        (_set([*CARD, "selectionBehavior"], "one"), "is not one of"),
        (_set([*CARD, "uuid"], "card-1"), "must be a UUID"),
        (_set([*CARD, "overrideReasons"], []), "null or empty"),
        (_set([*CARD, "overrideReasons"], [{"code": "x", "system": "urn:x"}]), "cds-resp-4"),
        (_set([*CARD, "detail"], None), "null or empty"),
        (_set([*CARD, "colour"], "red"), "not an element of the model"),
        (_set([*ACTION, "description"], _DELETE), "cds-resp-5"),
        (_set([*ACTION, "resource"], _DELETE), "carries its resource"),
        (_set([*ACTION, "type"], "replace"), "is not one of"),
        (_set([*CARD, "source", "url"], "/relative"), "absolute URL"),
    ],
)
def test_each_kind_of_mistake_is_found(change: Change, expected: str) -> None:
    document = _suggesting_card()
    assert check("CDSHooksResponse", document) == []
    broken = copy.deepcopy(document)
    change(broken)
    problems = check("CDSHooksResponse", broken)
    assert any(expected in problem for problem in problems), problems


def test_feedback_mistakes_are_found() -> None:
    accepted = example("feedback-accepted")
    del accepted["feedback"][0]["acceptedSuggestions"]
    assert any("cds-fb-2" in p for p in check("CDSHooksFeedback", accepted))
    overridden = example("feedback-overridden-with-reason")
    overridden["feedback"][0]["overrideReason"] = {"extension": {"x": 1}}
    assert any("cds-fb-3" in p for p in check("CDSHooksFeedback", overridden))


def test_discovery_mistakes_are_found() -> None:
    discovery = example("discovery")
    discovery["services"][0]["prefetch"]["patientToGreet"] = 7
    del discovery["services"][1]["description"]
    problems = check("CDSHooksServices", discovery)
    assert any("patientToGreet: must be a non-empty string" in p for p in problems), problems
    assert any("services[1].description: required" in p for p in problems), problems
