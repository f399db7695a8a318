"""flexion-careplan: a FHIR R4 care-plan service for the Flexion in Lying protocol."""

__version__ = "0.1.0"
