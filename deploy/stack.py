#!/usr/bin/env python3
"""The whole local system: Kafka, PostgreSQL, topics, migrations, the four services and Jaeger.

    stack.py infra    start (or reuse) Kafka and PostgreSQL and create the topics
    stack.py run      infra, migrations, the trace backend (Jaeger, built once), the four services
                      exporting their traces to it; waits until every /readyz is 200, then supervises
                      them (restarting one that exits) until Ctrl-C or `stack.py stop`
    stack.py stop     stop what `run` started, or everything of the stack when no `run` is active
    stack.py env SERVICE
                      print the environment a service runs with (for running one by hand)
    stack.py compose-env
                      print the variables docker-compose.yml needs (passwords, signing and encryption keys)

Standard library only; the services themselves run in the project's virtual environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jaegerctl  # noqa: E402
import kafkactl  # noqa: E402
import pgctl  # noqa: E402
from proc import (  # noqa: E402
    DEPLOY, REPO, VAR, StepFailed, dev_secrets, kafka_principal, main_guard, pid_alive, port_open, read_pid, say, stack, terminate,
    wait_until,
)
from supervisor import Supervised, describe_exit, supervise  # noqa: E402

VENV_PYTHON = REPO / ".venv" / "bin" / "python"
RUN_DIR = VAR / "run"
LOG_DIR = VAR / "log"
SUPERVISOR_PID = RUN_DIR / "stack.pid"
DEV_TOKENS = VAR / "dev-tokens.json"


def kafka_cluster() -> kafkactl.Cluster:
    cfg = stack()["kafka"]
    return kafkactl.Cluster("dev", 1, cfg["port"], cfg["controller_port"], kafkactl.secure_users())


def bootstrap() -> str:
    cfg = stack()["kafka"]
    return os.environ.get("TSUNAGU_KAFKA_BOOTSTRAP", f"{cfg['host']}:{cfg['port']}")


def service_env(name: str, traces: bool = True) -> dict[str, str]:
    """The service's settings; with `traces`, it exports to the stack's Jaeger unless
    TSUNAGU_OTLP_ENDPOINT says where else (empty: nowhere)."""
    cfg = stack()
    svc = cfg["services"][name]
    pg = cfg["postgres"]
    secrets = dev_secrets()
    password = secrets["postgres"][svc["database"]]
    env = {
        "TSUNAGU_AUTH_SECRET": secrets["auth_secret"],
        "TSUNAGU_HTTP_HOST": "127.0.0.1",
        "TSUNAGU_HTTP_PORT": str(svc["port"]),
        "TSUNAGU_INSTANCE_ID": f"{name}-1",  # one instance of each: a restart keeps its partitions
        "TSUNAGU_KAFKA_BOOTSTRAP": bootstrap(),
        # The service's own SCRAM user; its ACLs come from the topic registry (tsunagu_topics).
        "TSUNAGU_KAFKA_USERNAME": kafka_principal(name),
        "TSUNAGU_KAFKA_PASSWORD": secrets["kafka"][kafka_principal(name)],
        "TSUNAGU_DATABASE_URL": f"postgresql://{svc['database']}:{password}@{pg['host']}:{pg['port']}/{svc['database']}",
    }
    if name == "intake":
        env["TSUNAGU_INTAKE_PII_KEYS"] = secrets["intake_pii_key"]
        env["TSUNAGU_INTAKE_INDEX_KEY"] = secrets["intake_index_key"]
    if name == "partner-notification":
        env["TSUNAGU_PARTNERS_SECRET_KEYS"] = secrets["partners_secret_key"]
    if name == "housing-support":
        env["TSUNAGU_HOUSING_PII_KEYS"] = secrets["housing_pii_key"]
    otlp = os.environ.get("TSUNAGU_OTLP_ENDPOINT", jaegerctl.Instance().otlp_endpoint if traces else "")
    if otlp:
        env["TSUNAGU_OTLP_ENDPOINT"] = otlp
    return env


def venv_python() -> str:
    if not VENV_PYTHON.exists():
        raise StepFailed("the Python environment is missing; run `make run` (it installs it) instead of this script.")
    return str(VENV_PYTHON)


def topics_env() -> dict[str, str]:
    """What `python -m tsunagu_topics` needs: the admin's and each service's SCRAM password, in its
    environment rather than on its command line."""
    kafka = dev_secrets()["kafka"]
    env = {"TSUNAGU_KAFKA_USERNAME": kafkactl.ADMIN_USER, "TSUNAGU_KAFKA_PASSWORD": kafka[kafkactl.ADMIN_USER]}
    for name in stack()["services"]:
        env[f"TSUNAGU_KAFKA_PASSWORD_{name.upper().replace('-', '_')}"] = kafka[kafka_principal(name)]
    return env


def infra() -> dict[str, bool]:
    """Start or reuse Kafka and PostgreSQL, create the topics, the services' Kafka users and their
    ACLs; says which ones this call started."""
    started = {"kafka": kafka_cluster().start(stack()["kafka"]["heap"]), "postgres": pgctl.start()}
    out = subprocess.run([venv_python(), "-m", "tsunagu_topics", "--bootstrap", bootstrap()],
                         text=True, capture_output=True, env={**os.environ, **topics_env()})
    if out.returncode != 0:
        raise StepFailed(f"creating the Kafka topics failed:\n{out.stderr.strip()[-2000:]}")
    for line in out.stdout.strip().splitlines():
        say(line.removeprefix("[tsunagu] "))
    return started


def migrate(name: str) -> None:
    module = stack()["services"][name]["module"]
    out = subprocess.run([venv_python(), "-m", module, "migrate"], text=True, capture_output=True,
                         env={**os.environ, **service_env(name)})
    if out.returncode != 0:
        raise StepFailed(f"migrating the {name} database failed:\n{out.stderr.strip()[-2000:]}")
    say(f"{name}: database migrated")


def ready(port: int) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as r:
            return r.status == 200, r.read().decode()
    except urllib.error.HTTPError as e:
        return False, e.read().decode()
    except OSError as e:
        return False, str(e)


def stop_services() -> None:
    names = [*stack()["services"], "jaeger"]
    running = {name: pid for name in names if (pid := read_pid(RUN_DIR / f"{name}.pid"))}
    terminate(*running.values(), timeout=20)
    for name in names:
        (RUN_DIR / f"{name}.pid").unlink(missing_ok=True)
    if running:
        say(f"stopped {', '.join(running)}")


def stop_infra(started: dict[str, bool]) -> None:
    if started.get("kafka"):
        kafka_cluster().stop()
    if started.get("postgres"):
        pgctl.stop()


def write_dev_tokens() -> None:
    out = subprocess.run([venv_python(), "-m", "tsunagu_servicehost.devtokens", str(DEV_TOKENS)], text=True,
                         capture_output=True, env={**os.environ, "TSUNAGU_AUTH_SECRET": dev_secrets()["auth_secret"]})
    if out.returncode != 0:
        raise StepFailed(f"writing development tokens failed:\n{out.stderr.strip()[-2000:]}")


def dev_tokens() -> dict[str, str]:
    return json.loads(DEV_TOKENS.read_text()) if DEV_TOKENS.exists() else {}


def print_summary() -> None:
    cfg = stack()
    lines = ["Tsunagu is running. Where to look:"]
    for name, svc in cfg["services"].items():
        lines.append(f"  {name:<22} http://127.0.0.1:{svc['port']}/docs   (readyz, metrics, openapi.json)")
    jaeger = jaegerctl.Instance()
    if "TSUNAGU_OTLP_ENDPOINT" in os.environ:
        lines.append(f"  traces                 exported to {os.environ['TSUNAGU_OTLP_ENDPOINT'] or 'nowhere'}")
    elif jaeger.answering():
        lines.append(f"  traces (Jaeger)        {jaeger.ui}   (OTLP {jaeger.otlp_endpoint})")
    lines += [
        f"  Kafka                  {bootstrap()}",
        f"  PostgreSQL             {cfg['postgres']['host']}:{cfg['postgres']['port']} "
        f"(one database and role per service; passwords in {VAR / 'secrets.json'})",
        f"  logs                   {LOG_DIR}/ (one JSON object per line)",
        f"  development tokens     {DEV_TOKENS} (send as `Authorization: Bearer <token>`):",
        *(f"    {role:<12} {token}" for role, token in dev_tokens().items()),
        "Stop with Ctrl-C here, or `make stop` from another terminal.",
    ]
    for line in lines:
        say(line)


def service_process(name: str, traces: bool) -> Supervised:
    return Supervised(name, [venv_python(), "-m", stack()["services"][name]["module"], "serve"],
                      env={**os.environ, **service_env(name, traces)}, log=LOG_DIR / f"{name}.log",
                      pidfile=RUN_DIR / f"{name}.pid")


def start_jaeger_build() -> subprocess.Popen | None:
    """Build Jaeger (minutes, the first time only) while Kafka and PostgreSQL start."""
    if jaegerctl.binary().exists():
        return None
    # Its own session: stopping the stack during the build ends `go` too (terminate() signals the group).
    return subprocess.Popen([sys.executable, str(DEPLOY / "jaegerctl.py"), "build"], stdin=subprocess.DEVNULL,
                            start_new_session=True)


def start_jaeger(builder: subprocess.Popen | None, stopping: Callable[[], bool]) -> Supervised | None:
    """The trace backend, supervised like a service; None when traces go elsewhere or Go is missing."""
    if builder is not None:
        while builder.poll() is None and not stopping():
            time.sleep(0.3)
        if stopping():
            terminate(builder.pid, timeout=5)
            return None
    if "TSUNAGU_OTLP_ENDPOINT" in os.environ:
        return None
    instance = jaegerctl.Instance()
    if instance.answering():
        say(f"Jaeger is already running on {instance.ui}; the services export their traces to it")
        return None
    try:
        argv = instance.argv()
    except StepFailed as exc:
        # Traces are for looking at the system, not for running it: go on without them.
        say(f"no trace backend: {exc}")
        return None
    instance.check_ports_free()
    jaeger = Supervised("jaeger", argv, env=dict(os.environ), log=instance.log, pidfile=RUN_DIR / "jaeger.pid")
    jaeger.start(time.monotonic())
    instance.wait_until_answering(lambda: jaeger.exit_code() is None)
    say(f"jaeger: ready (pid {jaeger.process.pid}), UI on {instance.ui}")
    return jaeger


def wait_until_ready(services: dict[str, Supervised], stopping: Callable[[], bool]) -> None:
    """Every /readyz answers 200 within 90 s. A service that exits during start-up is not restarted:
    that is a configuration problem, and its log says which."""
    ports = {name: svc["port"] for name, svc in stack()["services"].items()}
    pending = set(services)
    deadline = time.monotonic() + 90
    while pending and not stopping():
        for name in sorted(pending):
            code = services[name].exit_code()
            if code is not None:
                raise StepFailed(f"the {name} service exited during start-up with {describe_exit(code)}; "
                                 f"see {services[name].log}")
            if ready(ports[name])[0]:
                say(f"{name}: ready")
                pending.discard(name)
        if time.monotonic() > deadline:
            details = "; ".join(f"{n}: {ready(ports[n])[1][:200]}" for n in sorted(pending))
            raise StepFailed(f"not ready within 90 s: {details}")
        time.sleep(0.3)


def run() -> int:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    other = read_pid(SUPERVISOR_PID)
    if other and other != os.getpid():
        say(f"the stack is already running (pid {other}); `make stop` stops it")
        print_summary()
        return 0
    cfg = stack()
    for name, svc in cfg["services"].items():
        if port_open("127.0.0.1", svc["port"]) and not read_pid(RUN_DIR / f"{name}.pid"):
            raise StepFailed(f"port 127.0.0.1:{svc['port']} for the {name} service is already in use "
                             f"by another program. Stop it (e.g. `ss -ltnp 'sport = :{svc['port']}'` shows which).")
    stop_services()  # leftovers of a run that was killed without cleaning up
    SUPERVISOR_PID.write_text(str(os.getpid()))

    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started: dict[str, bool] = {}
    builder = None
    try:
        builder = start_jaeger_build()
        started = infra()
        for name in cfg["services"]:
            migrate(name)
        jaeger = start_jaeger(builder, lambda: stopping)
        traces = jaegerctl.Instance().answering()
        services = {name: service_process(name, traces) for name in cfg["services"]}
        for name, service in services.items():
            service.start(time.monotonic())
            say(f"{name}: started (pid {service.process.pid}) on port {cfg['services'][name]['port']}")
        wait_until_ready(services, lambda: stopping)
        if not stopping:
            write_dev_tokens()
            print_summary()
        supervise([*services.values(), *([jaeger] if jaeger else [])], lambda: stopping)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping")
        if builder is not None and builder.poll() is None:
            terminate(builder.pid, timeout=5)
        stop_services()
        stop_infra(started)
        SUPERVISOR_PID.unlink(missing_ok=True)
        kept = [name for name in ("kafka", "postgres") if started.get(name) is False]
        if kept:
            say(f"stopped; {' and '.join(kept)} ran before `make run` and stay{'s' if len(kept) == 1 else ''} "
                f"running (`make stop` stops {'it' if len(kept) == 1 else 'them'})")
        else:
            say("stopped; no process of the stack is left running")


def stop() -> int:
    supervisor = read_pid(SUPERVISOR_PID)
    if supervisor:
        os.kill(supervisor, signal.SIGTERM)
        if not wait_until(lambda: not pid_alive(supervisor), 90):
            raise StepFailed(f"`make run` (pid {supervisor}) did not stop within 90 s")
        return 0
    stop_services()
    jaegerctl.Instance().stop()
    kafka_cluster().stop()
    pgctl.stop()
    return 0


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "infra":
        infra()
    elif command == "run":
        return run()
    elif command == "stop":
        return stop()
    elif command == "compose-env":
        cfg = stack()
        passwords = dev_secrets()["postgres"]
        print(f"TSUNAGU_PASSWORD_POSTGRES={passwords[cfg['postgres']['admin_role']]}")
        for service in cfg["services"].values():
            print(f"TSUNAGU_PASSWORD_{service['database'].upper()}={passwords[service['database']]}")
        secrets = dev_secrets()
        print(f"TSUNAGU_AUTH_SECRET={secrets['auth_secret']}")
        print(f"TSUNAGU_INTAKE_PII_KEYS={secrets['intake_pii_key']}")
        print(f"TSUNAGU_INTAKE_INDEX_KEY={secrets['intake_index_key']}")
        print(f"TSUNAGU_PARTNERS_SECRET_KEYS={secrets['partners_secret_key']}")
        print(f"TSUNAGU_HOUSING_PII_KEYS={secrets['housing_pii_key']}")
        kafka = secrets["kafka"]
        print(f"TSUNAGU_KAFKA_PASSWORD_ADMIN={kafka[kafkactl.ADMIN_USER]}")
        print(f"TSUNAGU_KAFKA_PASSWORD_CONTROLLER={kafka[kafkactl.CONTROLLER_USER]}")
        for name in cfg["services"]:
            print(f"TSUNAGU_KAFKA_PASSWORD_{name.upper().replace('-', '_')}={kafka[kafka_principal(name)]}")
    elif command == "env" and len(sys.argv) == 3:
        for key, value in service_env(sys.argv[2]).items():
            print(f"export {key}='{value}'")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    main_guard(main)
