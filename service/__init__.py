"""flexion-careplan: a FHIR R4 care-plan service for the Flexion in Lying protocol."""

__version__ = "0.1.0"

from service.wiring import install_protocol_search_params

install_protocol_search_params()
