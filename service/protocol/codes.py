"""Canonical URLs and code systems shared by the definitions, the clinical core and the API.

Everything the service publishes lives under one canonical base so that a clinic can tell our
artifacts from its own; LOINC and SNOMED CT are used wherever they have a code.
"""

CANONICAL_BASE = "https://fhir.flexion-careplan.org"

# The service's own CodeSystem: decision codes, rule ids, session components, location classes.
CAREPLAN_CS = f"{CANONICAL_BASE}/CodeSystem/flexion-careplan"

# A session panel's code, and the component that marks an Observation as one of its repetitions.
SESSION_CODE = "flexion-session"
REPETITION_INDEX = "repetition-index"

PLAN_DEFINITION_URL = f"{CANONICAL_BASE}/PlanDefinition/flexion-in-lying-protocol"
ACTIVITY_DEFINITION_BASE = f"{CANONICAL_BASE}/ActivityDefinition"
QUESTIONNAIRE_BASE = f"{CANONICAL_BASE}/Questionnaire"
STRUCTURE_DEFINITION_BASE = f"{CANONICAL_BASE}/StructureDefinition"

# Extension that carries one decision-table parameter on the PlanDefinition.
EXT_DECISION_PARAMETER = f"{STRUCTURE_DEFINITION_BASE}/decision-parameter"
# Extension on a level action: repetitions per session as a Range.
EXT_REPETITIONS_PER_SESSION = f"{STRUCTURE_DEFINITION_BASE}/repetitions-per-session"
# Extension on a level action: the level number (1, 2, 3).
EXT_PROTOCOL_LEVEL = f"{STRUCTURE_DEFINITION_BASE}/protocol-level"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

LOINC_PAIN_NRS = "72514-3"  # Pain severity - 0-10 verbal numeric rating [Score] - Reported
SNOMED_LOW_BACK_PAIN = "279039007"
SNOMED_LOWER_BACK = "37822005"
SNOMED_EXERCISE_THERAPY = "229065009"
SNOMED_EVALUATION_PROCEDURE = "386053000"
PAIN_UNIT = "{score}"

# Identifier system for session panels (the panel identifier makes submission idempotent).
SESSION_IDENTIFIER_SYSTEM = f"{CANONICAL_BASE}/sid/session"
