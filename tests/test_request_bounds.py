"""Every request of every service is bounded: each list in a body has a largest length, each string
a longest one (or is a code, a date, an id), and an area is a real municipality code. A request over
a bound is answered 422 before any handler runs, so nothing is stored or published."""

import copy
import re
from typing import Any

import httpx
import pytest

from tsunagu_servicehost import ServiceSettings, build_app
from tsunagu_servicehost.auth import Role
from tsunagu_teststack.infrastructure import stack_config
from tsunagu_teststack.tokens import bearer_token, token_settings

SERVICES = stack_config()["services"]
BOUNDED_FORMATS = {"uuid", "date", "date-time", "uri", "email"}


def app_with_auth(name: str):
    """The service as `serve` builds it, accepting the tests' tokens; it connects to nothing."""
    import importlib

    service = importlib.import_module(f"{SERVICES[name]['module']}.bootstrap").build_service()
    return build_app(service, ServiceSettings(http_port=1, database_url="postgresql://unused@localhost/unused",
                                              **token_settings(name)))


def unbounded(schema: dict, defs: dict, where: str, seen: frozenset = frozenset()) -> list[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return [] if name in seen else unbounded(defs[name], defs, where, seen | {name})
    found = [f for key in ("anyOf", "oneOf", "allOf") for s in schema.get(key, []) for f in unbounded(s, defs, where, seen)]
    kind = schema.get("type")
    if kind == "array":
        found += [] if "maxItems" in schema else [f"{where} (list without maxItems)"]
        found += unbounded(schema.get("items", {}), defs, f"{where}[]", seen)
    if kind == "string" and not ({"maxLength", "enum", "const"} & set(schema) or schema.get("format") in BOUNDED_FORMATS):
        found.append(f"{where} (string without maxLength)")
    if kind == "object":
        for key, sub in schema.get("properties", {}).items():
            found += unbounded(sub, defs, f"{where}.{key}", seen)
        if isinstance(schema.get("additionalProperties"), dict):
            found.append(f"{where} (object with any keys)")
    return found


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_list_and_string_a_request_can_carry_has_a_bound(name):
    document = app_with_auth(name).openapi()
    defs = document["components"]["schemas"]
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                found += unbounded(content["schema"], defs, f"{method.upper()} {path} body")
            for parameter in operation.get("parameters", []):
                found += unbounded(parameter["schema"], defs,
                                   f"{method.upper()} {path} {parameter['in']} {parameter['name']}")
    assert found == []


def lists_in(value: Any, path: tuple = ()) -> list[tuple]:
    """The path of every non-empty list in an example body."""
    if isinstance(value, dict):
        return [p for key, sub in value.items() for p in lists_in(sub, (*path, key))]
    if isinstance(value, list) and value:
        return [path, *(p for i, sub in enumerate(value) for p in lists_in(sub, (*path, i)))]
    return []


def too_long_variants(example: dict) -> list[tuple[str, dict]]:
    """The example with one list at a time made longer than any bound a list here has."""
    variants = []
    for path in lists_in(example):
        body = copy.deepcopy(example)
        holder = body
        for key in path[:-1]:
            holder = holder[key]
        items = holder[path[-1]]
        holder[path[-1]] = [copy.deepcopy(items[i % len(items)]) for i in range(1001)]
        variants.append((".".join(map(str, path)), body))
    return variants


def bodies_of(document: dict) -> list[tuple[str, str, dict]]:
    """Each operation that takes a JSON body, with its documented examples (read from the OpenAPI
    document, as a client would)."""
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema and "$ref" in schema:
                model = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
                found += [(method, path, example) for example in model.get("examples", [])]
    return found


ROLES = [role.value for role in Role if role is not Role.PARTNER]
SOME_ID = "0192f0c1-7a2e-7cc3-9a41-00000000b001"


@pytest.mark.parametrize("name", list(SERVICES))
async def test_a_list_longer_than_its_bound_is_answered_422_before_any_handler_runs(name):
    app = app_with_auth(name)
    bodies = bodies_of(app.openapi())
    checked = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                                 base_url="http://service") as client:
        for method, template, example in bodies:
            path = re.sub(r"\{[^}]+\}", lambda m: "housing" if m.group(0) == "{need}" else SOME_ID, template)
            for where, body in too_long_variants(example):
                # Whichever role the route admits: a refused role is answered 403 before validation. A handler
                # that ran would need the database, which this app does not have: it would answer 500 or 503.
                answers = [await client.request(method, path, json=body, headers={
                    "Authorization": f"Bearer {bearer_token(Role(role), partner_id=SOME_ID, audience=name)}",
                    "Idempotency-Key": "bounds"}) for role in [*ROLES, "partner"]]
                admitted = [a for a in answers if a.status_code not in (401, 403)]
                assert admitted, f"{method.upper()} {template}: no role admitted"
                for answer in admitted:
                    assert answer.status_code == 422, (
                        f"{method.upper()} {template} {where}: {answer.status_code} {answer.text[:300]}")
                    assert any(e["type"] == "too_long" for e in answer.json()["errors"]), answer.text[:300]
                checked.append(f"{method.upper()} {template} {where}")
    assert checked or not bodies, "no example body carries a list"


@pytest.mark.parametrize("area", ["142167", "14216", "1421666", "14216a", "９４２１６６", " 142166", "", "x" * 10_000])
@pytest.mark.parametrize("command", ["RegisterPartner", "Subscription"])
def test_a_partner_s_area_that_is_not_a_municipality_code_is_refused(command, area):
    from tsunagu_partners.domain import commands

    model = getattr(commands, command)
    body = model.model_json_schema()["examples"][0] | {"areas": ["142166", area]}

    with pytest.raises(ValueError) as refused:
        model.model_validate(body)
    assert refused.value.errors()[0]["loc"][:2] == ("areas", 1)


@pytest.mark.parametrize("area", ["142166", "132012", "011002", "130001"])
def test_real_municipality_codes_are_accepted_as_areas(area):
    from tsunagu_partners.domain.commands import Subscription

    assert Subscription(areas=[area]).areas == [area]


def test_intake_s_own_municipality_code_setting_is_checked_the_same_way(monkeypatch):
    from tsunagu_intake.bootstrap import IntakeSettings

    monkeypatch.setenv("TSUNAGU_INTAKE_MUNICIPALITY_CODE", "142167")
    with pytest.raises(ValueError):
        IntakeSettings()
