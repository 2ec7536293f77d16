"""What `docker build` would send: no Docker engine runs here, so the build context each Dockerfile
copies is worked out with docker-py's own reading of `.dockerignore` (the rules the engine applies)."""

import os
import re
import subprocess
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from tsunagu_teststack.infrastructure import repo_root

ROOT = repo_root()

LOCAL_STATE = [
    ".env", ".env.local", "deploy/.env",
    "var/secrets.json", "var/dev-tokens.json", "var/log/intake.log", "var/run/stack.pid",
    "var/postgres/data/base/1/1259", "var/kafka/dev-1/meta.properties",
    ".venv/bin/python", ".venv/lib/python3.11/site-packages/jwt/__init__.py",
    "contracts/tools/node_modules/@asyncapi/parser/package.json",
    "services/intake/src/tsunagu_intake/__pycache__/bootstrap.cpython-311.pyc",
    ".pytest_cache/v/cache/nodeids", ".hypothesis/examples/1/2", ".ruff_cache/0.1/abc",
    ".git/config", "deploy/tls/server.key", "deploy/tls/server.pem",
    "tests/conftest.py",
]
"""Files a developer's checkout holds that no image may carry: secrets, tokens, local databases,
logs, environments, caches, version control and the tests' sample people."""


def dockerfiles() -> list:
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        # var/ holds the running broker's and database's files, which come and go under the walk.
        subfolders[:] = [d for d in subfolders if d not in {".venv", "node_modules", ".git", "var"}]
        found += [Path(folder) / name for name in files if name.startswith("Dockerfile")]
    return sorted(found)


def copy_sources(dockerfile) -> list[str]:
    """The build-context sources of each COPY/ADD (not those copied from another stage)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    sources = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += args[:-1]
    return sources


def ignore_patterns() -> list[str]:
    # As docker-py and the engine read it: one pattern a line, `#` starts a comment line.
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.fixture
def checkout(tmp_path):
    """A copy of the repository's files, as empty files, plus what a working checkout accumulates."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for path in [*tracked, *LOCAL_STATE]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    return tmp_path


def sent(checkout, source: str) -> set[str]:
    """The files under `source` that docker would put in the build context."""
    included = exclude_paths(str(checkout), ignore_patterns())
    prefix = "" if source in (".", "./") else source.strip("./") + "/"
    return {p for p in included if p.startswith(prefix) and (checkout / p).is_file()}


def test_there_is_a_dockerfile_and_it_copies_from_the_build_context():
    assert dockerfiles(), "no Dockerfile found"
    assert all(copy_sources(f) for f in dockerfiles())


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_secret_token_database_log_environment_or_cache_reaches_an_image(dockerfile, checkout):
    for source in copy_sources(dockerfile):
        leaked = sorted(set(LOCAL_STATE) & sent(checkout, source))
        assert not leaked, f"{dockerfile.relative_to(ROOT)} `COPY {source}` would send {leaked}"


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_what_the_image_builds_from_is_still_sent(dockerfile, checkout):
    everything = set().union(*(sent(checkout, source) for source in copy_sources(dockerfile)))
    needed = {"pyproject.toml", "uv.lock", *(str(p.relative_to(ROOT)) for p in ROOT.glob("*/*/pyproject.toml")),
              "contracts/pyproject.toml", "services/intake/src/tsunagu_intake/bootstrap.py",
              "libs/servicehost/src/tsunagu_servicehost/app.py", "contracts/src/tsunagu_contracts/codes.py"}
    assert needed <= everything, sorted(needed - everything)
