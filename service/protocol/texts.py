"""Patient-facing and clinician-facing wording of a decision.

Every patient text ends with the protocol's own disclaimer (decision table, Prescription).
"""

from __future__ import annotations

from service.protocol import history as h
from service.protocol.decide import Decision
from service.protocol.parameters import Params

DISCLAIMER = (
    "Your own physical condition and diagnosis may require specific modifications or "
    "precautions. Before undertaking any course of self-treatment you should consult a doctor "
    "or a physiotherapist."
)


def _dose(params: Params, level: int) -> str:
    lv = params.level(level)
    reps = (
        str(lv.min_repetitions)
        if lv.min_repetitions == lv.max_repetitions
        else f"{lv.min_repetitions}-{lv.max_repetitions}"
    )
    return (
        f"do {reps} repetitions per session, {lv.sessions_min_per_day} to "
        f"{lv.sessions_max_per_day} sessions a day, and always follow each session immediately "
        "with Extension in Lying (the Cobra)"
    )


def _fired(decision: Decision, rule_id: str) -> bool:
    return rule_id in decision.rule_ids


def patient_text(decision: Decision, params: Params) -> str:
    code, level = decision.code, decision.level_new
    if code == h.STOP_AND_REFER and _fired(decision, h.STOP_STANDS):
        body = (
            "Your plan is still stopped: please do not do the flexion exercises until your "
            "clinician has reviewed your symptoms and resumes the plan. We have kept this session "
            "for your clinician to see."
        )
    elif code == h.STOP_AND_REFER:
        body = "Stop the flexion exercises now. A clinician will review your symptoms."
        if decision.urgent:
            body += " Please contact your clinician or seek urgent care today."
    elif code == h.SUPERVISION_REQUIRED:
        body = (
            "In the acute stage of a back pain episode this exercise needs to be done under the "
            "supervision of a qualified clinician. Please do not do it on your own yet."
        )
    elif code == h.HOLD_BACK:
        body = "Stop Flexion in Lying for now: it is probably too soon to start flexion."
        if decision.retry_start and decision.retry_end:
            body += (
                f" Try it again between {decision.retry_start.isoformat()} and "
                f"{decision.retry_end.isoformat()}."
            )
        if decision.review_requested:
            body += " A clinician has been asked to review your plan."
    elif code == h.NOT_YET_ELIGIBLE:
        body = "It is not yet time to begin Flexion in Lying."
        if decision.recheck_date:
            body += f" We will check again on {decision.recheck_date.isoformat()}."
        if decision.review_requested:  # a session before the start (C8)
            body += (
                " Please do not do the exercise until then. A clinician has been asked to look "
                "at the session you did."
            )
    elif code == h.DATA_REQUIRED:
        body = "We need a little more information before we can advise you (see the request)."
    elif code == h.PROGRESS:
        body = f"Well done: you can move on to level {level}; {_dose(params, level)}."
    elif code == h.START:
        body = (
            f"You can begin Flexion in Lying with caution: {_dose(params, level)}. Some central "
            "lower back pain at first is not uncommon; if pain increases with each repetition, "
            "stop."
        )
    else:
        body = f"Carry on at level {level}: {_dose(params, level)}."
        if _fired(decision, "R9b"):
            body += (
                " Your pain stayed away from the centre of your back; a clinician has been asked "
                "to look at your last session. If the pain moves further down your leg, stop."
            )
        elif decision.review_requested:
            body += " A clinician has been asked to look at your last session."
    if decision.warnings:
        body += " Please note: " + " ".join(w.source for w in decision.warnings)
    warned = {w.id for w in decision.warnings}
    if "W5" in warned:
        body += " Next time, try again inside the window you are given."
    if decision.cobra_review:
        body += (
            " You have not done the Cobra (Extension in Lying) right after several sessions in "
            "a row: do it immediately after every session. A clinician has been asked to review "
            "your plan."
        )
    return f"{body} {DISCLAIMER}"


def explanation(decision: Decision) -> str:
    """The clinician-facing note: the decision, each fired rule with its sentence, warnings."""
    parts = [f"Decision {decision.code} by {decision.plan_canonical}."]
    parts += [f"{f.id} ({f.tag}): {f.source}" for f in decision.fired]
    parts += [f"Warning {w.id} ({w.tag}): {w.source}" for w in decision.warnings]
    if decision.explanation:
        parts.append(decision.explanation)
    return "\n".join(parts)
