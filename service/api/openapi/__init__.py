"""Slim, typed models of the FHIR resources this service reads and returns (OpenAPI contract).

DESIGN.md section 2: the fhir.resources classes make a useless OpenAPI document, so the
contract is made of these models; routes still validate raw bodies against the R4B models'
own field metadata and primitive validators (service/fhir/structure.py).
"""

from service.api.openapi.components import component_schemas, input_name, searchset_name
from service.api.openapi.resources import READ_ONLY_TYPES, STORED_TYPES

__all__ = ["READ_ONLY_TYPES", "STORED_TYPES", "component_schemas", "input_name", "searchset_name"]
