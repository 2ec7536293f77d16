"""Secret files (generated passwords and keys, development tokens, docker compose's .env) are
readable by their owner only, 0600, also when an older copy was left readable by others."""

import json
import os
import stat
import subprocess
import sys

import pytest

from tsunagu_teststack.infrastructure import repo_root
from tsunagu_teststack.tokens import STAFF_AUDIENCE, STAFF_ISSUER, staff_key

ROOT = repo_root()
STACK = [sys.executable, str(ROOT / "deploy" / "stack.py")]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def var_dir(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    return var


def stack_py(var_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*STACK, *args], capture_output=True, text=True, check=True,
                          env={**os.environ, "TSUNAGU_VAR_DIR": str(var_dir)})


def test_generated_secrets_are_written_readable_by_their_owner_only(var_dir):
    stack_py(var_dir, "env", "intake")

    assert mode(var_dir / "secrets.json") == 0o600


def test_a_secrets_file_left_readable_by_others_is_tightened_when_read_and_keeps_its_secrets(var_dir):
    stack_py(var_dir, "env", "intake")
    before = json.loads((var_dir / "secrets.json").read_text())
    os.chmod(var_dir / "secrets.json", 0o644)

    out = stack_py(var_dir, "env", "referral")

    assert mode(var_dir / "secrets.json") == 0o600
    assert json.loads((var_dir / "secrets.json").read_text()) == before
    assert "it is now 600" in out.stdout


def test_compose_env_writes_the_env_file_with_mode_0600_even_over_a_looser_one(var_dir, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("OLD=1\n")
    os.chmod(env_file, 0o644)

    stack_py(var_dir, "compose-env", str(env_file))

    assert mode(env_file) == 0o600
    assert "TSUNAGU_SIGNING_KEY_INTAKE=" in env_file.read_text() and "OLD=1" not in env_file.read_text()


def test_compose_env_without_a_file_prints_the_same_variables(var_dir, tmp_path):
    stack_py(var_dir, "compose-env", str(tmp_path / ".env"))

    assert stack_py(var_dir, "compose-env").stdout == (tmp_path / ".env").read_text()


def test_make_compose_env_lets_the_script_write_the_file_instead_of_a_shell_redirect():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ncompose-env:\n", 1)[1].split("\n\n", 1)[0]

    assert "deploy/stack.py compose-env .env" in recipe and ">" not in recipe


def test_development_tokens_are_written_with_mode_0600_over_a_looser_file(tmp_path):
    tokens = tmp_path / "dev-tokens.json"
    tokens.write_text("{}")
    os.chmod(tokens, 0o644)

    subprocess.run([sys.executable, "-m", "tsunagu_servicehost.devtokens", "issue", str(tokens),
                    str(tmp_path / "dev-jwks.json")], check=True, capture_output=True,
                   env={**os.environ, "TSUNAGU_DEV_STAFF_KEY": staff_key(), "TSUNAGU_STAFF_ISSUER": STAFF_ISSUER,
                        "TSUNAGU_STAFF_AUDIENCE": STAFF_AUDIENCE})

    assert mode(tokens) == 0o600
    assert "ops" in json.loads(tokens.read_text())
