"""The AsyncAPI HTML documentation (`make docs`): every event on one page that works offline."""

import json
import re
import shutil
import subprocess

import pytest

from tsunagu_contracts import CATALOGUE
from tsunagu_teststack.infrastructure import repo_root

TOOLS = repo_root() / "docs" / "asyncapi-tools"


def _descriptions(schema: dict) -> list[str]:
    found = [sub["description"] for sub in schema.get("properties", {}).values() if "description" in sub]
    for sub in schema.get("$defs", {}).values():
        found += _descriptions(sub)
    return found


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    node = shutil.which("node")
    if node is None or not (TOOLS / "node_modules" / "@asyncapi" / "html-template").exists():
        pytest.fail("the AsyncAPI generator is not installed: run `make deps` (npm ci in docs/asyncapi-tools)")
    out = tmp_path_factory.mktemp("asyncapi-html")
    result = subprocess.run([node, str(TOOLS / "generate-docs.mjs"), str(repo_root() / "contracts" / "asyncapi.yaml"),
                             str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]
    return (out / "index.html").read_text()


def test_the_generated_page_shows_every_event_type(page):
    markup = re.sub(r"<script\b.*?</script>", "", page, flags=re.S)
    assert [e.type for e in CATALOGUE if e.type not in markup] == []
    assert [e.__name__ for e in CATALOGUE if e.__name__ not in markup] == []


def test_the_generated_page_carries_every_field_description(page):
    missing = [(e.__name__, text) for e in CATALOGUE for text in _descriptions(e.model_json_schema())
               if text not in page and json.dumps(text)[1:-1] not in page]
    assert missing == []


def test_the_generated_page_loads_no_script_style_or_font_from_elsewhere(page):
    assert re.findall(r"<script\b[^>]*\bsrc=", page) == []
    assert re.findall(r"<link\b[^>]*\bhref=\"(?!data:)", page) == []
    assert re.findall(r"@import|url\(\s*[\"']?(?:https?:)?//", page) == []
