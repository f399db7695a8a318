"""Test-support tools that check our FHIR output with independently written software."""
