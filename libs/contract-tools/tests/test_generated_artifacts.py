"""The checked-in AsyncAPI document, schemas and examples are exactly what the code generates."""

import json
import shutil
import subprocess

import pytest

from tsunagu_contract_tools.artifacts import render, write
from tsunagu_contracts import CATALOGUE, EVENT_TYPES
from tsunagu_teststack.infrastructure import repo_root

CONTRACTS = repo_root() / "contracts"


def test_the_checked_in_files_match_the_code__run_make_contracts_if_this_fails():
    files = render()
    stale = [rel for rel, text in files.items()
             if not (CONTRACTS / rel).exists() or (CONTRACTS / rel).read_text() != text]
    extra = [p.relative_to(CONTRACTS).as_posix() for d in ("schemas", "examples")
             for p in (CONTRACTS / d).rglob("*.json") if p.relative_to(CONTRACTS).as_posix() not in files]
    assert stale == [] and extra == []


def test_every_event_type_has_a_schema_and_at_least_one_valid_example():
    for event in CATALOGUE:
        assert (CONTRACTS / "schemas" / f"{event.type}.json").exists()
        examples = sorted((CONTRACTS / "examples" / event.type).glob("*.json"))
        assert examples, event.type
        for path in examples:
            assert EVENT_TYPES[event.type].model_validate_json(path.read_text())


def test_generating_into_an_empty_folder_writes_everything_and_a_second_run_changes_nothing(tmp_path):
    first = write(tmp_path)
    second = write(tmp_path)
    assert len(first) == len(render())
    assert second == []
    (tmp_path / "schemas" / "tsunagu.retired.v1.json").write_text("{}")
    assert write(tmp_path) == ["removed schemas/tsunagu.retired.v1.json"]


def test_the_official_asyncapi_parser_finds_no_error_in_the_document():
    node = shutil.which("node")
    parser = CONTRACTS / "tools" / "node_modules" / "@asyncapi" / "parser"
    if node is None or not parser.exists():
        pytest.fail("the AsyncAPI parser is not installed: run `make deps` (npm ci in contracts/tools)")
    result = subprocess.run([node, str(CONTRACTS / "tools" / "validate-asyncapi.mjs"),
                             str(CONTRACTS / "asyncapi.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid AsyncAPI 3" in result.stdout
    assert "warning" not in result.stdout, result.stdout


def test_the_document_has_every_topic_with_its_kafka_binding_and_every_message():
    import yaml

    document = yaml.safe_load((CONTRACTS / "asyncapi.yaml").read_text())
    addresses = {c["address"] for c in document["channels"].values()}
    from tsunagu_contracts import TOPICS, PartnerDeliveries

    assert {t.name for t in TOPICS} | {PartnerDeliveries.ADDRESS} == addresses
    assert set(document["components"]["messages"]) == {e.__name__ for e in CATALOGUE}
    for channel in document["channels"].values():
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]
    receivers = [op for op in document["operations"].values() if op["action"] == "receive"]
    assert all(op["bindings"]["kafka"]["groupId"]["enum"][0].startswith("tsunagu-") for op in receivers)
    json.dumps(document)  # plain data, no YAML-only constructs


def _refs_with_siblings(node, path="$") -> list[str]:
    if isinstance(node, list):
        return [p for i, item in enumerate(node) for p in _refs_with_siblings(item, f"{path}[{i}]")]
    if not isinstance(node, dict):
        return []
    found = [path] if "$ref" in node and len(node) > 1 else []
    return found + [p for key, value in node.items() for p in _refs_with_siblings(value, f"{path}.{key}")]


def test_a_field_that_refers_to_a_code_list_keeps_its_own_description_in_the_asyncapi_document():
    # AsyncAPI schemas follow JSON Schema draft-07, which ignores keywords beside a $ref.
    from tsunagu_contract_tools.artifacts import asyncapi_document

    schemas = asyncapi_document()["components"]["schemas"]
    assert _refs_with_siblings(schemas) == []
    counter = schemas["ConsultationRegistered"]["properties"]["counter"]
    assert counter["allOf"] == [{"$ref": "#/components/schemas/Division"}]
    assert counter["description"].startswith("The counter (窓口)")
