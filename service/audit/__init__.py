"""The audit trail's content: AuditEvent resources in the shape of IHE Basic Audit Log
Patterns (BALP) for FHIR R4, built from a plain description of what happened. Pure: the use
cases write what it builds (service/usecases/audit_trail.py)."""
