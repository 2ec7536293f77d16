"""docker-compose.yml runs the same system as `make run`; it cannot run here, so it is checked."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tsunagu_teststack.infrastructure import KAFKA_IMAGE, POSTGRES_IMAGE, repo_root, stack_config

ROOT = repo_root()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
STACK = stack_config()


def package_of(module: str) -> str:
    for pyproject in ROOT.glob("services/*/pyproject.toml"):
        if (pyproject.parent / "src" / module).is_dir():
            return tomllib.loads(pyproject.read_text())["project"]["name"]
    raise LookupError(module)


@pytest.mark.parametrize("name", list(STACK["services"]))
def test_each_service_has_the_same_port_database_and_module_as_make_run(name):
    expected = STACK["services"][name]
    service = COMPOSE[name]
    env = service["environment"]

    assert service["ports"] == [f"127.0.0.1:{expected['port']}:{expected['port']}"]
    assert env["TSUNAGU_HTTP_PORT"] == str(expected["port"])
    assert env["TSUNAGU_KAFKA_BOOTSTRAP"] == "kafka:29092"
    assert re.fullmatch(rf"postgresql://{expected['database']}:\$\{{\w+\}}@postgres:5432/{expected['database']}",
                        env["TSUNAGU_DATABASE_URL"])
    assert service["build"]["args"]["SERVICE_PACKAGE"] == package_of(expected["module"])
    assert f"python -m {expected['module']} migrate" in service["command"][-1]
    assert f"exec python -m {expected['module']} serve" in service["command"][-1]
    assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_the_stack_has_no_service_that_compose_lacks_and_none_extra():
    infrastructure = {"kafka", "postgres", "jaeger", "otel-collector", "topics", "prometheus", "grafana"}
    assert set(COMPOSE) - infrastructure == set(STACK["services"]) | {"console"}


def test_the_console_has_the_same_port_and_module_as_make_run_and_calls_each_service_by_its_port():
    console = COMPOSE["console"]
    env = console["environment"]

    assert console["ports"] == [f"127.0.0.1:{STACK['console']['port']}:{STACK['console']['port']}"]
    assert env["TSUNAGU_HTTP_PORT"] == str(STACK["console"]["port"])
    assert console["build"]["args"]["SERVICE_PACKAGE"] == package_of(STACK["console"]["module"])
    assert console["command"] == ["python", "-m", STACK["console"]["module"], "serve"]
    for setting, service in {"INTAKE": "intake", "REFERRAL": "referral", "HOUSING": "housing-support",
                             "PARTNERS": "partner-notification"}.items():
        assert env[f"TSUNAGU_CONSOLE_{setting}_URL"] == f"http://{service}:{STACK['services'][service]['port']}"


def test_postgres_creates_every_service_database_with_its_own_password():
    env = COMPOSE["postgres"]["environment"]
    databases = env["TSUNAGU_DATABASES"].split()
    assert databases == [s["database"] for s in STACK["services"].values()]
    for database in databases:
        assert f"TSUNAGU_PASSWORD_{database.upper()}" in env
    assert COMPOSE["postgres"]["ports"] == [f"127.0.0.1:{STACK['postgres']['port']}:5432"]


def test_kafka_is_the_same_version_and_port_as_the_native_stack():
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    kafka = COMPOSE["kafka"]
    assert kafka["image"] == f"apache/kafka:{version}"
    assert kafka["ports"] == [f"127.0.0.1:{STACK['kafka']['port']}:9092"]
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_testcontainers_use_the_same_images_as_compose():
    assert KAFKA_IMAGE == COMPOSE["kafka"]["image"]
    assert POSTGRES_IMAGE == COMPOSE["postgres"]["image"]


def test_services_export_traces_to_the_collector():
    for name in STACK["services"]:
        assert COMPOSE[name]["environment"]["TSUNAGU_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert "4318" in Path(ROOT / "deploy/docker/otel-collector.yaml").read_text()


def test_the_trace_viewer_is_on_the_same_port_as_make_runs_jaeger():
    assert COMPOSE["jaeger"]["ports"] == [f"127.0.0.1:{STACK['jaeger']['ui_port']}:16686"]


def test_no_secret_is_written_into_the_compose_file():
    for service in COMPOSE.values():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "SECRET", "KEY")):
                assert str(value).startswith("${"), f"{key} must come from the environment"


@pytest.mark.parametrize("name", list(STACK["services"]))
def test_every_service_gets_the_secrets_make_run_gives_it_and_no_other_services_signing_key(name):
    import subprocess
    import sys

    assert "env_file" not in COMPOSE[name], "an env_file would give every container every service's keys"
    printed = subprocess.run([sys.executable, str(ROOT / "deploy" / "stack.py"), "compose-env"], capture_output=True,
                             text=True, check=True, env={"TSUNAGU_VAR_DIR": str(ROOT / "var")}).stdout
    compose_vars = {line.split("=", 1)[0] for line in printed.splitlines()}
    run_env = subprocess.run([sys.executable, str(ROOT / "deploy" / "stack.py"), "env", name], capture_output=True,
                             text=True, check=True).stdout
    secret_vars = {line.split("=", 1)[0].removeprefix("export ") for line in run_env.splitlines()
                   if any(w in line.split("=", 1)[0] for w in ("SECRET", "KEY"))}
    environment = COMPOSE[name]["environment"]
    for variable in secret_vars:
        taken_from = re.fullmatch(r"\$\{(\w+)(:[?-].*)?\}", str(environment.get(variable, "")))
        assert taken_from and taken_from.group(1) in compose_vars, f"{variable} from .env"
    own_key = f"TSUNAGU_SIGNING_KEY_{name.upper().replace('-', '_')}"
    signing_keys = [v for v in map(str, environment.values()) if "TSUNAGU_SIGNING_KEY_" in v]
    assert signing_keys == [f"${{{own_key}:?run make compose-env first}}"]


def test_prometheus_scrapes_every_service_and_loads_the_alert_rules():
    prometheus = COMPOSE["prometheus"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {group["labels"]["service"]: group["targets"] for job in config["scrape_configs"]
               for group in job["static_configs"] if job["job_name"] == "tsunagu"}
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in prometheus["volumes"]}

    assert targets == {name: [f"{name}:{s['port']}"] for name, s in [*STACK["services"].items(),
                                                                     ("console", STACK["console"])]}
    for rule_file in config["rule_files"]:
        assert (ROOT / mounts[rule_file]).is_file(), f"{rule_file} is mounted from the repository"
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard():
    grafana = COMPOSE["grafana"]
    mounts = {volume.split(":")[1]: ROOT / volume.split(":")[0] for volume in grafana["volumes"]}
    datasources = yaml.safe_load((mounts["/etc/grafana/provisioning/datasources"] / "prometheus.yml").read_text())
    providers = yaml.safe_load((mounts["/etc/grafana/provisioning/dashboards"] / "tsunagu.yml").read_text())

    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    dashboards = mounts[providers["providers"][0]["options"]["path"]]
    assert (dashboards / "tsunagu.json").is_file()
