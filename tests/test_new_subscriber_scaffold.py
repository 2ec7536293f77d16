"""`make new-subscriber` in a copy of the repository gives a service whose own test passes on the real
broker and PostgreSQL, untouched; and the registry truth test covers it, failing when the service
subscribes to a topic the registry does not list it on."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tsunagu_contracts import ConsentWithdrawn, ReferralRequested
from tsunagu_teststack.infrastructure import repo_root

pytestmark = pytest.mark.stack


def copy_of_the_repository(into: Path) -> Path:
    """Every file git tracks or would track (no .venv, var or node_modules)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo_root(),
                            capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = repo_root() / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            (into / name).write_bytes(source.read_bytes())
    # What `make deps` installs, shared rather than installed again: the Python environment (stack.py
    # runs its tools in it) and the AsyncAPI parser.
    for installed in (".venv", "contracts/tools/node_modules"):
        (into / installed).symlink_to(repo_root() / installed, target_is_directory=True)
    return into


def environment_of(copy: Path, infrastructure) -> dict[str, str]:
    """The copy's packages ahead of this checkout's, and the session's running infrastructure (its
    admin password in the environment, never on a command line)."""
    sources = [copy / "contracts" / "src", *sorted(copy.glob("libs/*/src")), *sorted(copy.glob("services/*/src"))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, sources)),
           "TSUNAGU_TEST_KAFKA_BOOTSTRAP": infrastructure.kafka_bootstrap,
           "TSUNAGU_TEST_POSTGRES_DSN": infrastructure.postgres_admin_dsn}
    if infrastructure.kafka_admin is not None:
        env["TSUNAGU_TEST_KAFKA_USERNAME"] = infrastructure.kafka_admin.username
        env["TSUNAGU_TEST_KAFKA_PASSWORD"] = infrastructure.kafka_admin.password
    return env


def run(copy: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)


def test_a_generated_subscriber_passes_its_own_test_on_the_real_broker(tmp_path, infrastructure):
    copy = copy_of_the_repository(tmp_path / "repository")
    env = environment_of(copy, infrastructure)

    made = run(copy, env, "-m", "tsunagu_contract_tools.scaffold", "foodbank", ReferralRequested.type)
    assert made.returncode == 0, made.stderr
    env = environment_of(copy, infrastructure)  # with the new service's sources
    generated = run(copy, env, "-c", "import sys; from tsunagu_contract_tools.cli import main; "
                    "sys.argv = ['tsunagu-contracts', 'generate', '--contracts', 'contracts']; main()")
    assert generated.returncode == 0, generated.stderr  # as `make new-subscriber` runs `make contracts`
    tested = run(copy, env, "-m", "pytest", "services/foodbank/tests", "tests/test_topic_registry_truth.py",
                 "tests/test_docker_compose.py", "libs/contract-tools/tests/test_generated_artifacts.py",
                 "-v", "-p", "no:cacheprovider")
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-2000:]
    assert "test_a_service_subscribes_to_exactly_the_topics_the_registry_lists_it_on[foodbank] PASSED" in tested.stdout
    assert "test_foodbank_on_real_broker.py::test_a_record_that_cannot_be_decoded_goes_to_its_dead_letters PASSED" \
        in tested.stdout
    assert "test_each_service_has_the_same_port_database_and_module_as_make_run[foodbank] PASSED" in tested.stdout

    # The registry now says foodbank reads consent events (intake's topic), while it subscribes to referrals.
    subscribers = copy / "contracts" / "src" / "tsunagu_contracts" / "subscribers.toml"
    subscribers.write_text(subscribers.read_text().replace(ReferralRequested.type, ConsentWithdrawn.type))
    truth = run(copy, env, "-m", "pytest", "tests/test_topic_registry_truth.py", "-q", "-p", "no:cacheprovider")
    assert truth.returncode == 1
    assert "FAILED tests/test_topic_registry_truth.py::test_a_service_subscribes_to_exactly_the_topics_the_registry_" \
           "lists_it_on[foodbank]" in truth.stdout
