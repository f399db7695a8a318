"""FHIR errors: one exception type, rendered as an OperationOutcome with the right HTTP status."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    code: str  # http://hl7.org/fhir/issue-type, e.g. invalid, structure, required, not-found
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


@dataclass
class FhirError(Exception):
    """Raised anywhere below the routes; the error handler turns it into an OperationOutcome."""

    status: int
    issues: list[Issue]
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)


def fhir_error(
    status: int,
    code: str,
    diagnostics: str,
    expression: str | None = None,
    headers: dict[str, str] | None = None,
) -> FhirError:
    issue = Issue(
        code=code, diagnostics=diagnostics, expression=(expression,) if expression else ()
    )
    return FhirError(status, [issue], headers or {})


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def information_outcome(diagnostics: str) -> dict[str, Any]:
    return operation_outcome([Issue("informational", diagnostics, severity="information")])
