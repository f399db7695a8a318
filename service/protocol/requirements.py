"""DataRequirements for a `data-required` decision (R0): what the caller must send next."""

from __future__ import annotations

from service.protocol.codes import CAREPLAN_CS, LOINC, LOINC_PAIN_NRS
from service.protocol.fhirdata import Json
from service.protocol.parameters import Params
from service.protocol.rules import Context, missing_eligibility_inputs

# Missing eligibility input -> the Observation code that supplies it.
_INPUT_CODES: dict[str, tuple[str, str]] = {
    "red-flag-screen": (CAREPLAN_CS, "red-flag-screen"),
    "episode-phase": (CAREPLAN_CS, "episode-phase"),
    "daily-pain": (LOINC, LOINC_PAIN_NRS),
}


def _observation(system: str, code: str, days: int | None = None) -> Json:
    requirement: Json = {
        "type": "Observation",
        "codeFilter": [{"path": "code", "code": [{"system": system, "code": code}]}],
    }
    if days is not None:
        # the window the rules read, so the caller knows how recent the data must be
        requirement["dateFilter"] = [
            {
                "path": "effective",
                "valueDuration": {
                    "value": days,
                    "unit": "d",
                    "system": "http://unitsofmeasure.org",
                    "code": "d",
                },
            }
        ]
    return requirement


def data_requirements(ctx: Context, params: Params) -> tuple[Json, ...]:
    if ctx.session is not None:
        need = params.min_repetitions_scored
        req = _observation(LOINC, LOINC_PAIN_NRS)
        req["mustSupport"] = ["valueQuantity", "component"]
        return ({**req, "id": f"repetitions-min-{need}"},)
    windows = {
        "red-flag-screen": params.red_flag_lookback_days,
        "daily-pain": params.criterion_a_window_days,
        "episode-phase": None,
    }
    return tuple(
        {**_observation(*_INPUT_CODES[name], windows[name]), "id": name}
        for name in missing_eligibility_inputs(ctx)
    )
