"""Validate a parsed FHIR resource: structure and bindings first, then the R4B models."""

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from service.fhir.errors import FhirError, Issue
from service.fhir.structure import check_resource


def _pydantic_issues(resource_type: str, exc: ValidationError) -> list[Issue]:
    issues = []
    for error in exc.errors(include_url=False):
        location = ".".join(
            f"[{part}]" if isinstance(part, int) else str(part) for part in error["loc"]
        ).replace(".[", "[")
        expression = f"{resource_type}.{location}" if location else resource_type
        issues.append(Issue("invalid", str(error["msg"]), expression=(expression,)))
    return issues


def validate_resource(resource: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Return the resource unchanged when it is valid R4 JSON, else raise a 400 FhirError."""
    if not isinstance(resource, dict):
        raise FhirError(400, [Issue("structure", "The body must be a JSON object")])
    resource_type = resource.get("resourceType")
    if expected_type is not None and resource_type != expected_type:
        raise FhirError(
            400,
            [
                Issue(
                    "invalid",
                    f"resourceType {resource_type!r} does not match the endpoint {expected_type}",
                    expression=("resourceType",),
                )
            ],
        )
    issues = check_resource(resource)
    if issues:
        raise FhirError(400, issues)
    try:
        get_fhir_model_class(resource_type).model_validate(resource)
    except ValidationError as exc:
        raise FhirError(400, _pydantic_issues(resource_type, exc)) from None
    except (KeyError, ValueError, TypeError) as exc:
        # fhir.resources raises bare KeyError/ValueError on some malformed inputs.
        raise FhirError(400, [Issue("invalid", f"Invalid resource: {exc}")]) from None
    return resource
