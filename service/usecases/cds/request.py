"""A CDS Hooks 2.0 service request, checked: 400 with the element's path for anything a
service cannot use, before any work is done.

Checked: `hook` is the service's hook, `hookInstance` a UUID, `context` an object with
`patientId` (a FHIR id), `fhirServer` an http(s) URL and `fhirAuthorization` (a Bearer
`access_token`) only with it, `draftOrders` (order-sign) and `appointments`
(appointment-book) R4 Bundles, and the prefetch: `patient` the context's Patient,
`painScores` and `screening` Bundles of that patient's Observations. The Patient and the
context's Bundles are valid R4; the Observations are checked as R4 when they are used (for
a patient this service does not know: ``prefetched_observations(..., validate=True)``), not
on every call, where they are most often not needed. A prefetch key that is absent, or an
OperationOutcome (the EHR could not get it), counts as not given; `null` means the EHR has no
such data.
"""

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from service.fhir.errors import FhirError, Issue, fhir_error
from service.fhir.validate import validate_resource
from service.usecases.cds.services import (
    APPOINTMENT_BOOK,
    ORDER_SIGN,
    PAIN_KEY,
    PATIENT_KEY,
    SCREENING_KEY,
    CdsService,
)

Json = dict[str, Any]
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_SEARCH_KEYS = (PAIN_KEY, SCREENING_KEY)


@dataclass(frozen=True)
class HookCall:
    service: CdsService
    hook_instance: str
    patient_id: str
    fhir_server: str | None
    access_token: str | None
    context: Json
    patient: Json | None  # the prefetched Patient; None when not given
    # Prefetched Observations by key (None: not given), shape checked, not yet as R4.
    observations: dict[str, list[Json] | None]
    prefetch: Json

    @property
    def patient_ref(self) -> str:
        return f"Patient/{self.patient_id}"


def bad_request(text: str, where: str, code: str = "invalid") -> FhirError:
    return fhir_error(400, code, text, where)


def parse_hook_call(service: CdsService, body: Any) -> HookCall:
    if not isinstance(body, dict):
        raise fhir_error(400, "structure", "The request body must be a JSON object")
    hook = body.get("hook")
    if not isinstance(hook, str) or not hook:
        raise bad_request("hook is required", "hook", "required")
    if hook != service.hook:
        raise bad_request(f"The service {service.id} answers the hook {service.hook}", "hook")
    hook_instance = _hook_instance(body.get("hookInstance"))
    context = body.get("context")
    if context is None:
        raise bad_request("context is required", "context", "required")
    if not isinstance(context, dict):
        raise bad_request("context must be a JSON object", "context")
    patient_id = context.get("patientId")
    if patient_id is None:
        raise bad_request("context.patientId is required", "context.patientId", "required")
    if not isinstance(patient_id, str) or not _FHIR_ID.fullmatch(patient_id):
        raise bad_request("context.patientId must be a FHIR id", "context.patientId")
    fhir_server, token = _fhir_access(body)
    if service.hook == ORDER_SIGN:
        _bundle(context.get("draftOrders"), "context.draftOrders")
    if service.hook == APPOINTMENT_BOOK:
        _bundle(context.get("appointments"), "context.appointments")
    prefetch = body.get("prefetch")
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, dict):
        raise bad_request("prefetch must be a JSON object", "prefetch")
    return HookCall(
        service=service,
        hook_instance=hook_instance,
        patient_id=patient_id,
        fhir_server=fhir_server,
        access_token=token,
        context=context,
        patient=_prefetched_patient(prefetch, patient_id),
        observations={
            key: prefetched_observations(prefetch, key, patient_id, validate=False)
            for key in _SEARCH_KEYS
            if key in service.prefetch
        },
        prefetch=prefetch,
    )


def _hook_instance(value: Any) -> str:
    if value is None:
        raise bad_request("hookInstance is required", "hookInstance", "required")
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise bad_request("hookInstance must be a UUID", "hookInstance")


def _fhir_access(body: Json) -> tuple[str | None, str | None]:
    server = body.get("fhirServer")
    if server is not None:
        parts = urlsplit(server) if isinstance(server, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request("fhirServer must be an absolute http(s) URL", "fhirServer")
        server = server.rstrip("/")
    authorization = body.get("fhirAuthorization")
    if authorization is None:
        return server, None
    if not isinstance(authorization, dict):
        raise bad_request("fhirAuthorization must be a JSON object", "fhirAuthorization")
    if server is None:
        raise bad_request(
            "fhirAuthorization needs fhirServer (CDS Hooks cds-r-1)", "fhirServer", "required"
        )
    token = authorization.get("access_token")
    if not isinstance(token, str) or not token.strip():
        raise bad_request(
            "fhirAuthorization.access_token is required", "fhirAuthorization.access_token"
        )
    token_type = authorization.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise bad_request(
            "fhirAuthorization.token_type must be Bearer", "fhirAuthorization.token_type"
        )
    return server, token


def _typed(resource: Any, where: str, expected_type: str) -> Json:
    if not isinstance(resource, dict) or "resourceType" not in resource:
        raise bad_request(f"{where} must be a FHIR resource", where)
    if resource.get("resourceType") != expected_type:
        raise bad_request(
            f"{where} must be a {expected_type}, not {resource.get('resourceType')!r}", where
        )
    return resource


def _checked(resource: Any, where: str, expected_type: str) -> Json:
    """The resource when it is valid R4 of ``expected_type``; else 400 with paths inside the
    hook request."""
    _typed(resource, where, expected_type)
    try:
        return validate_resource(resource)
    except FhirError as error:
        head = f"{resource.get('resourceType')}."
        issues = [
            Issue(
                i.code,
                i.diagnostics,
                i.severity,
                tuple(f"{where}.{e.removeprefix(head)}" for e in i.expression),
            )
            for i in error.issues
        ]
        raise FhirError(400, issues or [Issue("invalid", f"{where} is not valid R4")]) from None


def _bundle(value: Any, where: str) -> Json:
    if value is None:
        raise bad_request(f"{where} is required", where, "required")
    return _checked(value, where, "Bundle")


def _prefetched_patient(prefetch: Json, patient_id: str) -> Json | None:
    value = prefetch.get(PATIENT_KEY)
    where = f"prefetch.{PATIENT_KEY}"
    if value is None or _is_outcome(value):
        return None
    patient = _checked(value, where, "Patient")
    if patient.get("id") != patient_id:
        raise bad_request(f"{where} is another patient than context.patientId", f"{where}.id")
    return patient


def prefetched_observations(
    prefetch: Json, key: str, patient_id: str, *, validate: bool
) -> list[Json] | None:
    """The Observations of a prefetched search (None: not given); each this patient's (400
    otherwise), and with ``validate`` the Bundle valid R4."""
    where = f"prefetch.{key}"
    if key not in prefetch:
        return None
    value = prefetch[key]
    if value is None:
        return []  # the EHR has no such data
    if _is_outcome(value):
        return None
    bundle = _checked(value, where, "Bundle") if validate else _typed(value, where, "Bundle")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise bad_request(f"{where}.entry must be an array", f"{where}.entry")
    found = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None or _is_outcome(resource):
            continue
        at = f"{where}.entry[{i}].resource"
        if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
            raise bad_request(f"{at} must be an Observation", at)
        if not refers_to_patient(resource.get("subject"), patient_id):
            raise bad_request(f"{at} is about another patient", f"{at}.subject")
        found.append(resource)
    return found


def refers_to_patient(reference: Any, patient_id: str) -> bool:
    """Whether a Reference names Patient/<patient_id> (relative, or absolute on any base)."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str):
        return False
    return text == f"Patient/{patient_id}" or text.endswith(f"/Patient/{patient_id}")


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"
