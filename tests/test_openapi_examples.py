"""Every request body in each service's OpenAPI document carries a complete example that its own
validation accepts, so the document can be tried as it is."""

import pytest
from fastapi.routing import APIRoute

from tsunagu_contracts.topics import read_subscribers
from tsunagu_teststack.infrastructure import stack_config
from tsunagu_teststack.services import service_app as app_of

SERVICES = stack_config()["services"]
SUBSCRIBERS = set(read_subscribers())
"""Services made with `make new-subscriber` serve only /healthz, /readyz and /metrics: no bodies, no operations."""


def api_routes(routes):
    """Every APIRoute, also those of included routers (which FastAPI keeps behind `original_router`)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from api_routes(included.routes)


@pytest.mark.parametrize("name", [name for name in SERVICES if name not in SUBSCRIBERS])
def test_every_request_body_has_a_valid_example(name):
    app = app_of(name)
    document = app.openapi()
    bodies = [route for route in api_routes(app.routes) if route.body_field is not None]
    assert bodies, "no operation with a request body was found: the walk over the routes is broken"
    for route in bodies:
        model = route.body_field.field_info.annotation
        examples = model.model_json_schema().get("examples", [])
        assert examples, f"{route.path}: {model.__name__} has no example"
        for example in examples:
            model.model_validate(example)
        schema = document["components"]["schemas"][model.__name__]
        assert schema.get("examples") == examples, f"{route.path}: the example is not in the OpenAPI document"


@pytest.mark.parametrize("name", list(SERVICES))
def test_the_openapi_document_is_titled_in_japanese_first(name):
    assert any("\u3040" <= ch <= "\u9fff" for ch in app_of(name).openapi()["info"]["title"])


@pytest.mark.parametrize("name", list(SERVICES))
def test_the_checked_in_openapi_document_is_what_the_code_serves__run_make_contracts_if_this_fails(name):
    import json

    from tsunagu_teststack.infrastructure import repo_root

    checked_in = json.loads((repo_root() / "services" / name / "openapi.json").read_text())
    assert checked_in == app_of(name).openapi()


@pytest.mark.parametrize("name", [name for name in SERVICES if name not in SUBSCRIBERS])
def test_every_operation_names_the_error_bodies_it_can_answer_with(name):
    document = app_of(name).openapi()
    operations = [(path, op) for path, ops in document["paths"].items()
                  if path not in {"/healthz", "/readyz", "/metrics"} for op in ops.values()]
    assert operations
    for path, operation in operations:
        unavailable = operation["responses"]["503"]
        assert "Retry-After" in unavailable["headers"], path
        assert unavailable["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorAnswer"}
        if "422" in operation["responses"]:
            invalid = operation["responses"]["422"]["content"]["application/json"]["schema"]
            assert invalid == {"$ref": "#/components/schemas/InvalidRequest"}, path
    assert "HTTPValidationError" not in document["components"]["schemas"], "FastAPI's 422 shape is not what we send"


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_operation_documents_413_for_a_body_over_the_size_limit(name):
    document = app_of(name).openapi()
    for path, ops in document["paths"].items():
        for method, operation in ops.items():
            too_large = operation["responses"].get("413")
            assert too_large, f"{method.upper()} {path} does not document 413"
            assert too_large["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorAnswer"}


@pytest.mark.parametrize("name", list(SERVICES))
def test_readiness_documents_its_reasons_as_for_the_ops_role_only(name):
    readyz = app_of(name).openapi()["paths"]["/readyz"]["get"]

    assert "checks" not in app_of(name).openapi()["components"]["schemas"]["Readiness"].get("required", [])
    assert "ops" in app_of(name).openapi()["components"]["schemas"]["Readiness"]["properties"]["checks"]["description"]
    assert {"200", "503"} <= set(readyz["responses"])
