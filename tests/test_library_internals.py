"""The private internals of SQLAlchemy, fhir.resources, Starlette and uvicorn that the service
relies on, each named with the file that uses it. pyproject.toml caps these libraries at the
minor version this suite proves; when an upgrade removes one of them, this fails with the file to
fix instead of a puzzle somewhere in the store or the validator."""

import inspect
from typing import Any

import pytest
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy.dialects import postgresql, sqlite


def _compiled(dialect: Any) -> Any:
    table = sa.table("t", sa.column("a", sa.Integer), sa.column("b", sa.String))
    stmt = sa.select(table.c.a).where(table.c.b.in_(sa.bindparam("bs", expanding=True)))
    return stmt.compile(dialect=dialect)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()])
@pytest.mark.parametrize(
    "attribute",
    [
        "_bind_processors",
        "_process_parameters_for_postcompile",
        "_result_columns",
        "positiontup",
        "post_compile_params",
        "bind_names",
        "literal_execute_params",
        "escaped_bind_names",
        "insert_prefetch",
        "update_prefetch",
    ],
)
def test_sqlalchemy_compiler_internals(dialect: Any, attribute: str) -> None:
    compiled = _compiled(dialect)
    assert hasattr(compiled, attribute), (
        f"SQLAlchemy {sa.__version__}: SQLCompiler.{attribute} is gone; "
        "service/store/engine/prepared.py uses it"
    )


def test_sqlalchemy_postcompile_expansion_shape() -> None:
    expanded = _compiled(sqlite.dialect())._process_parameters_for_postcompile(
        {"bs": [None, None]}, _populate_self=False
    )
    for attribute in ("statement", "positiontup", "processors", "parameter_expansion"):
        assert hasattr(expanded, attribute), (
            f"SQLAlchemy {sa.__version__}: the expanded state has no {attribute}; "
            "service/store/engine/prepared.py uses it"
        )


def test_sqlalchemy_type_and_insert_internals() -> None:
    assert hasattr(sa.Integer(), "_cached_result_processor"), (
        "TypeEngine._cached_result_processor is gone; service/store/engine/prepared.py uses it"
    )
    insert = sa.table("t", sa.column("a")).insert()
    for attribute in ("_values", "_multi_values"):
        assert hasattr(insert, attribute), (
            f"Insert.{attribute} is gone; service/store/engine/prepared.py uses it"
        )


def _extra(resource_type: str, field: str) -> dict[str, Any]:
    info = get_fhir_model_class(resource_type).model_fields[field]
    extra = info.json_schema_extra
    assert isinstance(extra, dict), (
        f"fhir.resources: {resource_type}.{field} has no json_schema_extra dict; "
        "service/fhir/structure.py and service/fhir/search_params.py read it"
    )
    return extra


@pytest.mark.parametrize(
    ("resource_type", "field", "key"),
    [
        ("Observation", "status", "element_required"),
        ("Observation", "valueQuantity", "one_of_many"),
        ("Observation", "effectiveDateTime", "one_of_many"),
        ("Observation", "subject", "enum_reference_types"),
        ("CarePlan", "subject", "enum_reference_types"),
    ],
)
def test_fhir_resources_field_metadata(resource_type: str, field: str, key: str) -> None:
    assert key in _extra(resource_type, field), (
        f"fhir.resources: {resource_type}.{field} lost json_schema_extra[{key!r}]; "
        "service/fhir/structure.py reads it"
    )


def test_fhir_resources_required_choice_metadata() -> None:
    """Every choice field carries the key (False where the group is optional)."""
    keys = {
        key
        for info in get_fhir_model_class("Observation").model_fields.values()
        if isinstance(info.json_schema_extra, dict)
        for key in info.json_schema_extra
    }
    assert "one_of_many_required" in keys, (
        "fhir.resources no longer marks choice groups with one_of_many_required; "
        "service/fhir/structure.py reads it"
    )


def test_starlette_route_path_helper() -> None:
    from starlette import _utils

    assert callable(getattr(_utils, "get_route_path", None)), (
        "starlette._utils.get_route_path is gone; service/api/rest.py (TypeRouter) uses it"
    )


def test_uvicorn_httptools_protocol_internals() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for method in (
        "connection_made",
        "connection_lost",
        "on_headers_complete",
        "on_response_complete",
    ):
        assert callable(getattr(HttpToolsProtocol, method, None)), (
            f"uvicorn's HttpToolsProtocol.{method} is gone; service/server.py overrides it"
        )
    source = inspect.getsource(HttpToolsProtocol)
    for attribute in ("self.timeout_keep_alive_task", "self.timeout_keep_alive", "self.loop"):
        assert attribute in source, (
            f"uvicorn's HttpToolsProtocol no longer has {attribute}; service/server.py uses it"
        )
