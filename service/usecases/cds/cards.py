"""CDS Hooks 2.0 cards from the protocol's decision state.

Every card has a uuid (derived from the hook call, so the same call gives the same uuids and
feedback can name them), a summary under 140 characters, an indicator (critical for a stop
and refer, warning for a hold-back or supervision-required, info otherwise), a Markdown
detail naming the rules with their protocol sentences, and a source naming the
PlanDefinition (its url; the version in the label). Cards with suggestions carry
`selectionBehavior` and override reasons (HL7's non-adherence reason codes).
"""

import re
import uuid
from collections.abc import Iterable
from datetime import date
from typing import Any

from service.protocol import history as h
from service.protocol.apply import AppliedPlan
from service.protocol.decide import Decision, FiredRule
from service.protocol.parameters import Params, read_params
from service.protocol.rules import ALL_RULES
from service.usecases.cds.plans import PlanView

Json = dict[str, Any]
MAX_SUMMARY = 139  # "<140-character summary"
# Fixed forever: card and suggestion uuids derive from it.
CARD_NAMESPACE = uuid.UUID("0b5d3f0e-5c2a-5b8e-9d41-7f3c1e2a6b90")
NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
_INDICATOR = {
    h.STOP_AND_REFER: "critical",
    h.HOLD_BACK: "warning",
    h.SUPERVISION_REQUIRED: "warning",
}
_RULES = {rule.id: rule for rule in ALL_RULES}
_MISSING = {
    "red-flag-screen": "a red-flag screen",
    "episode-phase": "the episode phase",
    "daily-pain": "daily pain scores",
}
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|])")


def indicator(code: str) -> str:
    return _INDICATOR.get(code, "info")


def card_uuid(hook_instance: str, service_id: str, key: str) -> str:
    return str(uuid.uuid5(CARD_NAMESPACE, f"{hook_instance}|{service_id}|{key}"))


def _suggestion_uuid(card: str, key: str) -> str:
    return str(uuid.uuid5(CARD_NAMESPACE, f"{card}|{key}"))


def _reason(code: str, display: str) -> Json:
    return {"system": NON_ADHERENCE, "code": code, "display": display}


ENROLMENT_OVERRIDES = (
    _reason("patient-ineligible", "Patient does not meet eligibility for recommended action"),
    _reason("indication-order-exists", "Patient has indication/order for intended action"),
    _reason("prefers-alternative", "Patient prefers an alternative approach or treatment"),
    _reason(
        "recipient-disagrees-evidence",
        "Recipient disagrees with recommendation because of issues with the evidence",
    ),
)
DISAGREE_OVERRIDES = (
    _reason("expert-contradicts", "Advice from expert contradicts the recommended action"),
    _reason("not-convenient-feasible", "Recommendation is not convenient or feasible"),
    _reason(
        "recipient-disagrees-evidence",
        "Recipient disagrees with recommendation because of issues with the evidence",
    ),
)


def summary(text: str) -> str:
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1].rstrip() + "…"


def markdown(text: str) -> str:
    """Plain text safe inside Markdown (no emphasis, links, tables or HTML by accident)."""
    return _MARKDOWN.sub(r"\\\1", text)


def source(plan_definition: Json) -> Json:
    title = plan_definition.get("title") or "Flexion in Lying protocol"
    return {
        "label": f"{title}, version {plan_definition.get('version')}",
        "url": str(plan_definition.get("url")),
    }


def _card(
    uuid_: str, text: str, code: str, detail: str, plan_definition: Json, **extra: Any
) -> Json:
    card: Json = {
        "uuid": uuid_,
        "summary": summary(text),
        "indicator": indicator(code),
        "detail": detail,
        "source": source(plan_definition),
    }
    card.update(extra)
    return card


def _rule_lines(rule_ids: Iterable[str]) -> list[str]:
    lines = []
    for rule_id in rule_ids:
        rule = _RULES.get(rule_id)
        if rule is None:
            continue
        kind = "warning, " if rule_id.startswith("W") else ""
        lines.append(f"- **{rule_id}** ({kind}{rule.tag}): {markdown(rule.source)}")
    return lines


def _fired_lines(fired: Iterable[FiredRule]) -> list[str]:
    return [f"- **{f.id}** ({f.tag}): {markdown(f.source)}" for f in fired]


def _dose(params: Params, level: int) -> str:
    lv = params.level(level)
    reps = (
        str(lv.min_repetitions)
        if lv.min_repetitions == lv.max_repetitions
        else f"{lv.min_repetitions}-{lv.max_repetitions}"
    )
    return f"{reps} repetitions, {lv.sessions_min_per_day}-{lv.sessions_max_per_day} sessions a day"


# --------------------------------------------------------------------------- the plan


def plan_card(view: PlanView, uuid_: str) -> Json:
    """The patient's plan: the latest decision, its rules, the retry window, open reviews."""
    decision, state = view.decision, view.state
    level = state.level if state is not None else _first_level(view.params)
    if view.stopped or view.paused:
        # A clinician's pause holds the plan back; only a stop waits for a review.
        code = h.STOP_AND_REFER if view.stopped else h.HOLD_BACK
        text = (
            "Flexion in Lying stopped: clinician review needed before any more flexion"
            if view.stopped
            else "Flexion in Lying paused by a clinician: no sessions until resumed"
        )
    elif view.on_hold and state is not None:
        code = h.HOLD_BACK
        window = f"{_day(state.retry_start)} and {_day(state.retry_end)}"
        text = f"Flexion in Lying on hold: retry between {window}"
    elif decision is None:
        code = h.START
        text = f"Enrolled on Flexion in Lying at level {level}; no session decided yet"
    else:
        code = decision.code
        text = _decision_summary(decision, level)
    if view.reviews and not view.stopped:
        text += "; clinician review requested"
    return _card(
        uuid_,
        text,
        code,
        _plan_detail(view, level),
        view.plan_definition,
        **({"overrideReasons": list(DISAGREE_OVERRIDES)} if indicator(code) != "info" else {}),
    )


def _decision_summary(decision: h.PastDecision, level: int) -> str:
    code = decision.code
    if code == h.PROGRESS:
        return f"Flexion in Lying: progressed to level {level}"
    if code == h.START:
        return f"Flexion in Lying: start at level {level}"
    if code == h.CONTINUE:
        return f"Flexion in Lying: continue at level {level}"
    if code == h.SUPERVISION_REQUIRED:
        return "Flexion in Lying only under qualified supervision (acute phase)"
    if code == h.NOT_YET_ELIGIBLE:
        return "Flexion in Lying: not yet eligible"
    if code == h.DATA_REQUIRED:
        return "Flexion in Lying: more information needed for the next decision"
    if code == h.HOLD_BACK:
        return "Flexion in Lying on hold"
    return f"Flexion in Lying: {code}"


def _plan_detail(view: PlanView, level: int) -> str:
    pd = view.plan_definition
    care_plan = view.care_plan
    lines = [
        f"**Plan:** CarePlan/{care_plan.get('id')} ({care_plan.get('status')}), level {level}, "
        f"{markdown(_dose(view.params, level))}; PlanDefinition {pd.get('url')} version "
        f"{pd.get('version')}.",
        "",
    ]
    decision = view.decision
    if decision is None:
        lines.append("**Latest decision:** none yet.")
    else:
        response = view.guidance_response or {}
        lines += [
            f"**Latest decision:** `{decision.code}` on {decision.at.date().isoformat()} "
            f"(GuidanceResponse/{response.get('id')}).",
            "",
        ]
        rules = _rule_lines(view.rule_ids)
        if rules:
            lines += ["**Why:**", "", *rules]
    state = view.state
    if view.stopped and state is not None and state.stop_rules:
        lines += [
            "",
            f"**Stopped by:** {', '.join(state.stop_rules)}; a clinician resumes the plan "
            "by setting its flexion activity back to in-progress.",
        ]
    if view.paused:
        lines += ["", "**Paused:** the CarePlan is on hold; no sessions are taken until resumed."]
    if view.on_hold and state is not None:
        window = f"{_day(state.retry_start)} to {_day(state.retry_end)}"
        task = view.retry_task
        where = f" (Task/{task.get('id')})" if task is not None else ""
        lines += [
            "",
            f"**Retry window:** {window}{where}; a session before "
            f"{_day(state.retry_start)} is answered with the same hold.",
        ]
    if view.reviews:
        lines += ["", "**Open review requests:**", ""]
        for request in view.reviews:
            authored = str(request.get("authoredOn", ""))[:10]
            lines.append(
                f"- ServiceRequest/{request.get('id')}, {request.get('priority', 'routine')}, "
                f"requested {authored}"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- enrolment


def enrolment_card(
    applied: AppliedPlan, plan_definition: Json, patient_ref: str, uuid_: str
) -> Json:
    """Eligible without a plan: the CarePlan $apply gives, as a create action for the EHR."""
    decision = applied.decision
    level = decision.level_new
    params_dose = _dose(read_params(plan_definition), level)
    care_plan = {k: v for k, v in applied.care_plan.items() if k not in ("id", "addresses")}
    # The EHR creates it on its own server, where the patient is the EHR's.
    care_plan["subject"] = {"reference": patient_ref}
    detail = "\n".join(
        [
            f"The patient meets the protocol's start criteria on "
            f"{decision.clock.date().isoformat()}:",
            "",
            *_fired_lines(decision.fired),
            "",
            f"**Dose at level {level}:** {markdown(params_dose)}, each session followed at once "
            "by Extension in Lying.",
        ]
    )
    suggestion = {
        "label": f"Enrol on Flexion in Lying (level {level})",
        "uuid": _suggestion_uuid(uuid_, "enrol"),
        "isRecommended": True,
        "actions": [
            {
                "type": "create",
                "description": f"Create the Flexion in Lying CarePlan, level {level}, active",
                "resource": care_plan,
            }
        ],
    }
    return _card(
        uuid_,
        f"Eligible for Flexion in Lying: enrol at level {level} ({params_dose})",
        decision.code,
        detail,
        plan_definition,
        suggestions=[suggestion],
        selectionBehavior="at-most-one",
        overrideReasons=list(ENROLMENT_OVERRIDES),
    )


def not_yet_card(decision: Decision, plan_definition: Json, uuid_: str) -> Json:
    """No plan and not eligible now (order-sign): why not yet."""
    code = decision.code
    if code == h.STOP_AND_REFER:
        text = "Red flag positive: refer for clinician review; do not start Flexion in Lying"
    elif code == h.SUPERVISION_REQUIRED:
        text = "Acute phase: Flexion in Lying only under qualified supervision, not at home yet"
    elif code == h.DATA_REQUIRED:
        wanted = [
            _MISSING.get(str(r.get("id")), str(r.get("id"))) for r in decision.data_requirements
        ]
        text = "Flexion in Lying needs " + (", ".join(wanted) or "more data") + " before enrolment"
    elif code == h.NOT_YET_ELIGIBLE:
        when = decision.recheck_date.isoformat() if decision.recheck_date else "later"
        text = f"Not yet eligible for Flexion in Lying: re-check on {when}"
    else:
        text = f"Flexion in Lying: {code}"
    lines = [
        f"Decision `{code}` on {decision.clock.date().isoformat()}:",
        "",
        *_fired_lines(decision.fired),
    ]
    return _card(uuid_, text, code, "\n".join(lines), plan_definition)


# --------------------------------------------------------------------------- visits


def visit_card(view: PlanView, appointment: Json, moved: Json | None, uuid_: str) -> Json:
    """A proposed flexion visit the plan does not allow yet: when it may be (or that a
    clinician review is pending), with a suggestion to move it (or cancel it)."""
    state = view.state
    what = f"Appointment/{appointment.get('id')}" if appointment.get("id") else "The visit"
    when = str(appointment.get("start", ""))[:10] or "an unset date"
    if view.stopped or view.paused or state is None or state.retry_start is None:
        code = h.STOP_AND_REFER if view.stopped else h.HOLD_BACK
        text = (
            "Flexion in Lying is stopped pending clinician review: no flexion visit until resumed"
            if view.stopped
            else "Flexion in Lying is paused by a clinician: no flexion visit until resumed"
        )
        reasons = [
            "The plan is stopped: a clinician review is pending"
            if view.stopped
            else "The plan is paused by a clinician",
            *(f"open review ServiceRequest/{r.get('id')}" for r in view.reviews),
        ]
        label, description = "Cancel this visit", "Cancel the proposed visit until the review"
    else:
        code = h.HOLD_BACK
        opens = _day(state.retry_start)
        text = f"Flexion in Lying on hold until {opens}: move this visit into the retry window"
        reasons = [f"The retry window is {opens} to {_day(state.retry_end)}"]
        label = f"Move the visit to {opens}"
        description = f"Move the proposed visit to {opens}, when the retry window opens"
    lines = [
        f"{markdown(what)} on {when} falls where the plan takes no flexion session.",
        "",
        *(f"- {markdown(reason)}" for reason in reasons),
        "",
        *(_rule_lines(view.rule_ids)),
    ]
    extra: Json = {"overrideReasons": list(DISAGREE_OVERRIDES)}
    if moved is not None:
        extra["suggestions"] = [
            {
                "label": label,
                "uuid": _suggestion_uuid(uuid_, "visit"),
                "actions": [{"type": "update", "description": description, "resource": moved}],
            }
        ]
        extra["selectionBehavior"] = "at-most-one"
    return _card(uuid_, text, code, "\n".join(lines).rstrip(), view.plan_definition, **extra)


def _first_level(params: Params) -> int:
    return params.levels[0].number


def _day(value: date | None) -> str:
    return value.isoformat() if value is not None else "an unset date"
