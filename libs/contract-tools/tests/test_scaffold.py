"""`make new-subscriber` refuses what it cannot make, writing nothing, and registers what it makes."""

import ast
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

from tsunagu_contract_tools.scaffold import Refused, scaffold
from tsunagu_contracts import REFERRALS, ReferralRequested
from tsunagu_contracts.topics import read_subscribers
from tsunagu_teststack.infrastructure import repo_root

SUBSCRIBERS = "contracts/src/tsunagu_contracts/subscribers.toml"


@pytest.fixture
def repository(tmp_path):
    """The files the scaffold registers a service in, as the repository has them."""
    for path in ("deploy/stack.toml", SUBSCRIBERS, "docker-compose.yml", "deploy/prometheus/prometheus.yml"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo_root() / path, tmp_path / path)
    (tmp_path / "services").mkdir()
    return tmp_path


def everything_in(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["Foodbank", "1food", "food_bank", "food bank", "", "-food", "../food"])
def test_a_name_that_is_not_lowercase_letters_digits_and_hyphens_is_refused(repository, name):
    before = everything_in(repository)
    with pytest.raises(Refused, match=r"\[a-z\]\[a-z0-9-\]\*"):
        scaffold(repository, name, [ReferralRequested.type])
    assert everything_in(repository) == before


@pytest.mark.parametrize("name", ["referral", "console", "intake"])
def test_the_name_of_an_existing_service_is_refused(repository, name):
    before = everything_in(repository)
    with pytest.raises(Refused, match="exists already"):
        scaffold(repository, name, [ReferralRequested.type])
    assert everything_in(repository) == before


def test_an_unknown_event_type_is_refused_and_named(repository):
    before = everything_in(repository)
    with pytest.raises(Refused, match="tsunagu.referral.teleported.v1") as refused:
        scaffold(repository, "foodbank", [ReferralRequested.type, "tsunagu.referral.teleported.v1"])
    assert refused.value.message_ja.startswith("未知のイベント種別")
    assert everything_in(repository) == before


def test_no_event_type_at_all_is_refused(repository):
    with pytest.raises(Refused, match="at least one event type"):
        scaffold(repository, "foodbank", [])


def test_a_folder_that_exists_is_refused_and_left_as_it_was(repository):
    (repository / "services" / "foodbank").mkdir()
    (repository / "services" / "foodbank" / "notes.txt").write_text("mine")
    before = everything_in(repository)
    with pytest.raises(Refused, match="exists already; nothing was written"):
        scaffold(repository, "foodbank", [ReferralRequested.type])
    assert everything_in(repository) == before


def test_a_new_subscriber_is_registered_as_a_consumer_of_its_topic_and_as_a_process_of_the_stack(repository):
    made = scaffold(repository, "foodbank", [ReferralRequested.type])

    assert read_subscribers(repository / SUBSCRIBERS) == {"foodbank": (ReferralRequested.type,)}
    stack = tomllib.loads((repository / "deploy" / "stack.toml").read_text())
    assert stack["services"]["foodbank"] == {"module": "tsunagu_foodbank", "port": made.port, "database": "foodbank"}
    ports = {s.get(k) for s in stack["services"].values() if s is not stack["services"]["foodbank"]
             for k in ("port", "internal_port")}
    assert made.port not in ports | {stack["console"]["port"]}
    kafka = (made.dest / "src" / "tsunagu_foodbank" / "entrypoints" / "kafka.py").read_text()
    assert "EventConsumer(runtime, REFERRALS," in kafka and REFERRALS.name not in kafka
    compose = yaml.safe_load((repository / "docker-compose.yml").read_text())
    assert compose["services"]["foodbank"]["ports"] == [f"127.0.0.1:{made.port}:{made.port}"]
    assert compose["services"]["postgres"]["environment"]["TSUNAGU_DATABASES"].split()[-1] == "foodbank"
    assert "TSUNAGU_PASSWORD_FOODBANK" in compose["services"]["postgres"]["environment"]
    assert f'"foodbank:{made.port}"' in (repository / "deploy" / "prometheus" / "prometheus.yml").read_text()


def test_a_compose_file_laid_out_otherwise_is_refused_before_anything_is_written(repository):
    compose = repository / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("`make new-subscriber` adds", "someone removed"))
    before = everything_in(repository)

    with pytest.raises(Refused) as refusal:
        scaffold(repository, "foodbank", [ReferralRequested.type])

    assert "docker-compose.yml" in refusal.value.message_en
    assert everything_in(repository) == before


def test_every_generated_python_file_parses(repository):
    made = scaffold(repository, "food-bank", [ReferralRequested.type, "tsunagu.intake.consent-withdrawn.v1"])
    sources = sorted(made.dest.rglob("*.py"))
    assert len(sources) >= 12
    for source in sources:
        ast.parse(source.read_text(), filename=str(source))


def test_a_subscribers_file_naming_an_unknown_event_stops_the_registry_with_the_reason(tmp_path):
    path = tmp_path / "subscribers.toml"
    path.write_text('[subscribers.foodbank]\nevents = ["tsunagu.referral.teleported.v1"]\n')
    with pytest.raises(ValueError, match="teleported"):
        read_subscribers(path)


def test_the_command_says_what_is_wrong_in_japanese_and_english_and_exits_1(repository):
    result = subprocess.run([sys.executable, "-m", "tsunagu_contract_tools.scaffold", "Food", ReferralRequested.type,
                             "--root", str(repository)], capture_output=True, text=True)
    assert result.returncode == 1
    ja, en = result.stderr.splitlines()
    assert "名前" in ja and "[a-z][a-z0-9-]*" in en
