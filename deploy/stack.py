#!/usr/bin/env python3
"""The whole local system: Kafka, PostgreSQL, topics, migrations, the four services and Jaeger.

    stack.py infra    start (or reuse) Kafka and PostgreSQL and create the topics
    stack.py run      infra, migrations, the trace backend (Jaeger, built once), the four services
                      exporting their traces to it and the web console; waits until every /readyz is
                      200, then supervises them (restarting one that exits) until Ctrl-C or `stack.py stop`
    stack.py stop     stop what `run` started, or everything of the stack when no `run` is active
    stack.py env SERVICE
                      print the environment a service runs with (for running one by hand)
    stack.py compose-env [FILE]
                      the variables docker-compose.yml needs (passwords, signing and encryption keys),
                      written to FILE with mode 0600 (`make compose-env`: .env), or printed

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
    DEPLOY, REPO, VAR, StepFailed, dev_secrets, kafka_principal, main_guard, pid_alive, port_open, read_pid,
    read_private, say, stack, terminate, wait_until, write_private,
)
from supervisor import Supervised, describe_exit, supervise  # noqa: E402

VENV_PYTHON = REPO / ".venv" / "bin" / "python"
RUN_DIR = VAR / "run"
LOG_DIR = VAR / "log"
SUPERVISOR_PID = RUN_DIR / "stack.pid"
DEV_TOKENS = VAR / "dev-tokens.json"
DEV_JWKS = VAR / "dev-jwks.json"
"""The development staff issuer's public keys; services read them as TSUNAGU_STAFF_JWKS_URL (file://)."""


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
        "TSUNAGU_HTTP_HOST": "127.0.0.1",
        "TSUNAGU_HTTP_PORT": str(svc["port"]),
        "TSUNAGU_INSTANCE_ID": f"{name}-1",  # one instance of each: a restart keeps its partitions
        "TSUNAGU_KAFKA_BOOTSTRAP": bootstrap(),
        # The service's own SCRAM user; its ACLs come from the topic registry (tsunagu_topics).
        "TSUNAGU_KAFKA_USERNAME": kafka_principal(name),
        "TSUNAGU_KAFKA_PASSWORD": secrets["kafka"][kafka_principal(name)],
        "TSUNAGU_DATABASE_URL": f"postgresql://{svc['database']}:{password}@{pg['host']}:{pg['port']}/{svc['database']}",
    }
    env |= token_env(name)
    env["TSUNAGU_STAFF_JWKS_URL"] = os.environ.get("TSUNAGU_STAFF_JWKS_URL", DEV_JWKS.as_uri())
    if "internal_port" in svc:
        env["TSUNAGU_INTERNAL_PORT"] = str(svc["internal_port"])
    if name == "intake":
        env["TSUNAGU_INTAKE_PII_KEYS"] = secrets["intake_pii_key"]
        env["TSUNAGU_INTAKE_INDEX_KEY"] = secrets["intake_index_key"]
    if name == "partner-notification":
        env["TSUNAGU_PARTNERS_SECRET_KEYS"] = secrets["partners_secret_key"]
        # Partners' receivers during development run on this machine; never on a deployment.
        env["TSUNAGU_PARTNERS_ALLOW_LOOPBACK_WEBHOOKS"] = "true"
        env["TSUNAGU_PARTNERS_INTAKE_URL"] = f"http://127.0.0.1:{cfg['services']['intake']['internal_port']}"
        # Where partners reach this service: webhooks link a referral's details there.
        env["TSUNAGU_PARTNERS_PUBLIC_URL"] = f"http://127.0.0.1:{svc['port']}"
        # Mail notices go to the development sink (deploy/mailsink.py), on loopback without STARTTLS.
        env["TSUNAGU_PARTNERS_SMTP_HOST"] = cfg["mailsink"]["host"]
        env["TSUNAGU_PARTNERS_SMTP_PORT"] = str(cfg["mailsink"]["smtp_port"])
        env["TSUNAGU_PARTNERS_SMTP_STARTTLS"] = "false"
        env["TSUNAGU_PARTNERS_CONSOLE_URL"] = f"http://127.0.0.1:{cfg['console']['port']}"
    if name == "housing-support":
        env["TSUNAGU_HOUSING_PII_KEYS"] = secrets["housing_pii_key"]
    otlp = os.environ.get("TSUNAGU_OTLP_ENDPOINT", jaegerctl.Instance().otlp_endpoint if traces else "")
    if otlp:
        env["TSUNAGU_OTLP_ENDPOINT"] = otlp
    return env


def console_env(traces: bool = True) -> dict[str, str]:
    """The console's settings: where the four APIs are, its cookie key, and (development only) the
    development issuer's key, so its sign-in page can offer each staff role."""
    cfg = stack()
    urls = {"intake": "INTAKE", "referral": "REFERRAL", "housing-support": "HOUSING",
            "partner-notification": "PARTNERS"}
    env = {"TSUNAGU_HTTP_HOST": "127.0.0.1", "TSUNAGU_HTTP_PORT": str(cfg["console"]["port"]),
           "TSUNAGU_CONSOLE_SESSION_KEYS": dev_secrets()["console_session_key"],
           "TSUNAGU_CONSOLE_SECURE_COOKIES": "false",  # plain http on loopback
           "TSUNAGU_CONSOLE_DEV_STAFF_KEY": dev_secrets()["signing_keys"]["dev-staff-issuer"],
           "TSUNAGU_DEV_STAFF_KID": cfg["staff_tokens"]["kid"], **staff_issuer()}
    for name, key in urls.items():
        env[f"TSUNAGU_CONSOLE_{key}_URL"] = f"http://127.0.0.1:{cfg['services'][name]['port']}"
    otlp = os.environ.get("TSUNAGU_OTLP_ENDPOINT", jaegerctl.Instance().otlp_endpoint if traces else "")
    if otlp:
        env["TSUNAGU_OTLP_ENDPOINT"] = otlp
    return env


def staff_issuer() -> dict[str, str]:
    """The development staff issuer; a city's own identity provider replaces it through
    TSUNAGU_STAFF_ISSUER, TSUNAGU_STAFF_JWKS_URL and TSUNAGU_STAFF_AUDIENCE."""
    cfg = stack()["staff_tokens"]
    return {"TSUNAGU_STAFF_ISSUER": os.environ.get("TSUNAGU_STAFF_ISSUER", cfg["issuer"]),
            "TSUNAGU_STAFF_AUDIENCE": os.environ.get("TSUNAGU_STAFF_AUDIENCE", cfg["audience"])}


_public_keys: dict[str, str] = {}


def public_keys() -> dict[str, str]:
    """Each service's public key, derived from its private key in var/secrets.json (in the project's
    Python environment: the standard library has no Ed25519)."""
    if not _public_keys:
        private = {name: key for name, key in dev_secrets()["signing_keys"].items() if name in stack()["services"]}
        out = subprocess.run([venv_python(), "-m", "tsunagu_servicehost.devtokens", "public-keys"], text=True,
                             capture_output=True, input=json.dumps(private))
        if out.returncode != 0:
            raise StepFailed(f"deriving the services' public keys failed:\n{out.stderr.strip()[-2000:]}")
        _public_keys.update(json.loads(out.stdout))
    return _public_keys


def token_env(name: str) -> dict[str, str]:
    """A service's own signing key, its callers' public keys (deploy/stack.toml `callers`) and the
    staff issuer it trusts."""
    callers = stack()["services"][name].get("callers", [])
    return {"TSUNAGU_SERVICE_SIGNING_KEY": dev_secrets()["signing_keys"][name],
            "TSUNAGU_SERVICE_CALLERS": json.dumps({caller: public_keys()[caller] for caller in callers},
                                                  separators=(",", ":")),
            **staff_issuer()}


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


def ready(port: int, token: str = "") -> tuple[bool, str]:
    """Whether the service on `port` is ready; with an ops token, also why not."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/readyz", headers=headers),
                                    timeout=3) as r:
            return r.status == 200, r.read().decode()
    except urllib.error.HTTPError as e:
        return False, e.read().decode()
    except OSError as e:
        return False, str(e)


def stop_services() -> None:
    names = ["console", *stack()["services"], "jaeger", "mailsink"]
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
    """The development issuer's JWKS (public) and a staff token per role (var/dev-tokens.json, 0600)."""
    env = {**os.environ, **staff_issuer(), "TSUNAGU_DEV_STAFF_KEY": dev_secrets()["signing_keys"]["dev-staff-issuer"],
           "TSUNAGU_DEV_STAFF_KID": stack()["staff_tokens"]["kid"]}
    out = subprocess.run([venv_python(), "-m", "tsunagu_servicehost.devtokens", "issue", str(DEV_TOKENS),
                          str(DEV_JWKS)], text=True, capture_output=True, env=env)
    if out.returncode != 0:
        raise StepFailed(f"writing development tokens failed:\n{out.stderr.strip()[-2000:]}")


def dev_tokens() -> dict[str, str]:
    return json.loads(read_private(DEV_TOKENS)) if DEV_TOKENS.exists() else {}


def print_summary() -> None:
    cfg = stack()
    lines = ["Tsunagu is running. Where to look:",
             f"  console (web pages)    http://127.0.0.1:{cfg['console']['port']}/   (sign in as any staff role)"]
    for name, svc in cfg["services"].items():
        lines.append(f"  {name:<22} http://127.0.0.1:{svc['port']}/docs   (readyz, metrics, openapi.json)")
    jaeger = jaegerctl.Instance()
    if "TSUNAGU_OTLP_ENDPOINT" in os.environ:
        lines.append(f"  traces                 exported to {os.environ['TSUNAGU_OTLP_ENDPOINT'] or 'nowhere'}")
    elif jaeger.answering():
        lines.append(f"  traces (Jaeger)        {jaeger.ui}   (OTLP {jaeger.otlp_endpoint})")
    sink = cfg["mailsink"]
    lines.append(f"  sent mail (dev sink)   http://{sink['host']}:{sink['http_port']}/   "
                 f"(SMTP {sink['host']}:{sink['smtp_port']}; nothing is relayed)")
    lines += [
        f"  Kafka                  {bootstrap()}",
        f"  PostgreSQL             {cfg['postgres']['host']}:{cfg['postgres']['port']} "
        f"(one database and role per service; passwords in {VAR / 'secrets.json'})",
        f"  logs                   {LOG_DIR}/ (one JSON object per line)",
        # The tokens themselves stay in their 0600 file: a terminal's scrollback is no place for them.
        f"  development tokens     {DEV_TOKENS} (mode 600; roles {', '.join(dev_tokens())}; "
        "send as `Authorization: Bearer <token>`)",
        "Stop with Ctrl-C here, or `make stop` from another terminal.",
    ]
    for line in lines:
        say(line)


def service_process(name: str, traces: bool) -> Supervised:
    return Supervised(name, [venv_python(), "-m", stack()["services"][name]["module"], "serve"],
                      env={**os.environ, **service_env(name, traces)}, log=LOG_DIR / f"{name}.log",
                      pidfile=RUN_DIR / f"{name}.pid")


def console_process(traces: bool) -> Supervised:
    return Supervised("console", [venv_python(), "-m", stack()["console"]["module"], "serve"],
                      env={**os.environ, **console_env(traces)}, log=LOG_DIR / "console.log",
                      pidfile=RUN_DIR / "console.pid")


def start_mailsink() -> Supervised:
    """The development SMTP sink (deploy/mailsink.py), supervised like Jaeger, before the services."""
    sink = stack()["mailsink"]
    for port in (sink["smtp_port"], sink["http_port"]):
        if port_open(sink["host"], port):
            raise StepFailed(f"port {sink['host']}:{port} for the mail sink is already in use by another program")
    mailsink = Supervised("mailsink", [venv_python(), str(DEPLOY / "mailsink.py")], env=dict(os.environ),
                          log=LOG_DIR / "mailsink.log", pidfile=RUN_DIR / "mailsink.pid")
    mailsink.start(time.monotonic())
    if not wait_until(lambda: port_open(sink["host"], sink["http_port"]) or mailsink.exit_code() is not None, 30) \
            or mailsink.exit_code() is not None:
        raise StepFailed(f"the mail sink did not start; see {LOG_DIR / 'mailsink.log'}")
    say(f"mailsink: ready (pid {mailsink.process.pid}), page on http://{sink['host']}:{sink['http_port']}/")
    return mailsink


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
    ports = {name: svc["port"] for name, svc in stack()["services"].items()} | {"console": stack()["console"]["port"]}
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
            token = dev_tokens().get("ops", "")  # so /readyz says why
            details = "; ".join(f"{n}: {ready(ports[n], token)[1][:200]}" for n in sorted(pending))
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
    for name, svc in [*cfg["services"].items(), ("console", cfg["console"])]:
        for port in (svc["port"], svc.get("internal_port")):
            if port and port_open("127.0.0.1", port) and not read_pid(RUN_DIR / f"{name}.pid"):
                raise StepFailed(f"port 127.0.0.1:{port} for the {name} service is already in use "
                                 f"by another program. Stop it (e.g. `ss -ltnp 'sport = :{port}'` shows which).")
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
        write_dev_tokens()  # the JWKS the services check staff tokens against
        jaeger = start_jaeger(builder, lambda: stopping)
        traces = jaegerctl.Instance().answering()
        mailsink = start_mailsink()
        services = {name: service_process(name, traces) for name in cfg["services"]}
        services["console"] = console_process(traces)
        for name, service in services.items():
            service.start(time.monotonic())
            port = cfg["console"]["port"] if name == "console" else cfg["services"][name]["port"]
            say(f"{name}: started (pid {service.process.pid}) on port {port}")
        wait_until_ready(services, lambda: stopping)
        if not stopping:
            print_summary()
        supervise([*services.values(), mailsink, *([jaeger] if jaeger else [])], lambda: stopping)
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


def token_variables() -> list[str]:
    """Each service's own signing key and its callers' public keys, under names of their own:
    docker-compose.yml hands each container its key alone (never an env_file every container reads)."""
    lines = []
    for name in stack()["services"]:
        tokens = token_env(name)
        variable = name.upper().replace("-", "_")
        lines += [f"TSUNAGU_SIGNING_KEY_{variable}={tokens['TSUNAGU_SERVICE_SIGNING_KEY']}",
                  f"TSUNAGU_CALLERS_{variable}='{tokens['TSUNAGU_SERVICE_CALLERS']}'"]
    return lines + [f"{key}={value}" for key, value in staff_issuer().items()]


def compose_env() -> str:
    """The variables docker-compose.yml needs, one `NAME=value` a line."""
    cfg = stack()
    secrets = dev_secrets()
    passwords = secrets["postgres"]
    lines = [f"TSUNAGU_PASSWORD_POSTGRES={passwords[cfg['postgres']['admin_role']]}",
             *(f"TSUNAGU_PASSWORD_{service['database'].upper()}={passwords[service['database']]}"
               for service in cfg["services"].values()),
             *token_variables(),
             f"TSUNAGU_INTAKE_PII_KEYS={secrets['intake_pii_key']}",
             f"TSUNAGU_INTAKE_INDEX_KEY={secrets['intake_index_key']}",
             f"TSUNAGU_PARTNERS_SECRET_KEYS={secrets['partners_secret_key']}",
             f"TSUNAGU_HOUSING_PII_KEYS={secrets['housing_pii_key']}",
             f"TSUNAGU_CONSOLE_SESSION_KEYS={secrets['console_session_key']}",
             # A local trial signs staff in by role; a city sets its identity provider instead.
             f"TSUNAGU_CONSOLE_DEV_STAFF_KEY={secrets['signing_keys']['dev-staff-issuer']}",
             f"TSUNAGU_KAFKA_PASSWORD_ADMIN={secrets['kafka'][kafkactl.ADMIN_USER]}",
             f"TSUNAGU_KAFKA_PASSWORD_CONTROLLER={secrets['kafka'][kafkactl.CONTROLLER_USER]}",
             *(f"TSUNAGU_KAFKA_PASSWORD_{name.upper().replace('-', '_')}={secrets['kafka'][kafka_principal(name)]}"
               for name in cfg["services"])]
    return "".join(line + "\n" for line in lines)


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "infra":
        infra()
    elif command == "run":
        return run()
    elif command == "stop":
        return stop()
    elif command == "compose-env" and len(sys.argv) <= 3:
        text = compose_env()
        write_dev_tokens()  # docker-compose.yml mounts the development issuer's JWKS
        if len(sys.argv) == 3:
            write_private(Path(sys.argv[2]), text)
            say(f"wrote {sys.argv[2]} (mode 600)")
        else:
            print(text, end="")
    elif command == "env" and len(sys.argv) == 3:
        for key, value in service_env(sys.argv[2]).items():
            print(f"export {key}='{value}'")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    main_guard(main)
