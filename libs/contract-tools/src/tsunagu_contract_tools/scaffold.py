"""`tsunagu-new-subscriber NAME EVENT_TYPE[,EVENT_TYPE...]`: a runnable subscriber service from the contracts.

It writes `services/<name>/` (or `--dest`) from the Jinja2 templates beside this module: a workspace
member whose FastStream subscribers take their topics from the registry, plain async handlers
taking the contract models, exactly-once effects through the shared consumer of
`tsunagu_servicehost`, its own dead-letter topic, migrations, and a test on the real broker. Then
it registers the service: its events in `contracts/src/tsunagu_contracts/subscribers.toml` (so the
registry lists it as a consumer and its Kafka user, ACLs and dead-letter topic follow) and its
module, port and database in `deploy/stack.toml` (so `make run` starts it).

Everything is checked before anything is written: a bad name, an unknown event type or a folder
that exists gives a clear error and changes nothing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tsunagu_contracts import CATALOGUE, topic_for_event
from tsunagu_contracts import topics as registry

TEMPLATES = Path(__file__).with_name("templates") / "subscriber"
NAME = re.compile(r"[a-z][a-z0-9-]*")
FIRST_PORT = 8005


class Refused(Exception):
    """The scaffold was asked for something it cannot make; nothing has been written."""

    def __init__(self, message_ja: str, message_en: str):
        super().__init__(f"{message_ja} / {message_en}")
        self.message_ja, self.message_en = message_ja, message_en


@dataclass(frozen=True)
class Consumed:
    """One event the new service handles, and where the generated code finds it."""

    type: str
    model: str  # the contract class, e.g. ReferralRequested
    module: str  # the handler's module name, e.g. referral_requested
    topic: str  # the registry constant of its topic, e.g. REFERRALS
    example: str  # contracts/examples/<type>/1.json


@dataclass(frozen=True)
class Plan:
    name: str
    package: str
    database: str
    port: int
    dest: Path
    root: Path
    events: tuple[Consumed, ...]

    @property
    def topics(self) -> dict[str, list[Consumed]]:
        by_topic: dict[str, list[Consumed]] = {}
        for event in self.events:
            by_topic.setdefault(event.topic, []).append(event)
        return by_topic

    @property
    def contract_imports(self) -> str:
        """What the subscribers import from the contracts: the topics, the models, the envelope."""
        return ", ".join(sorted({*self.topics, *(e.model for e in self.events), "Envelope", "Event"}))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _topic_constant(event_type: str) -> str:
    """The registry's name for the topic that carries the event (INTAKE_CASES, REFERRALS, ...)."""
    topic = topic_for_event(next(e for e in CATALOGUE if e.type == event_type))
    for constant, value in vars(registry).items():
        if constant.isupper() and value is topic:
            return constant
    raise LookupError(topic.name)  # every topic of EVENT_TOPICS is a module constant


def plan(root: Path, name: str, event_types: list[str], dest: Path | None = None) -> Plan:
    """Check the request against the repository and the registry; raise Refused on the first problem."""
    if not NAME.fullmatch(name):
        raise Refused(f"名前 {name!r} は使えません。英小文字で始まり、英小文字・数字・ハイフンだけにしてください。",
                      f"the name {name!r} must match [a-z][a-z0-9-]*")
    with open(root / "deploy" / "stack.toml", "rb") as f:
        stack = tomllib.load(f)
    services = stack.get("services", {})
    package = "tsunagu_" + name.replace("-", "_")
    database = name.replace("-", "_")
    taken = (set(registry.SERVICES) | set(services) | {"console", "operations"}
             | set(registry.read_subscribers(root / "contracts" / "src" / "tsunagu_contracts" / "subscribers.toml")))
    if name in taken or database in {s.get("database") for s in services.values()} \
            or package in {s.get("module") for s in services.values()}:
        raise Refused(f"サービス名 {name!r} はすでに使われています。", f"a service named {name!r} exists already")
    known = {e.type: e for e in CATALOGUE}
    if not event_types:
        raise Refused("購読するイベント種別を一つ以上指定してください。", "name at least one event type to subscribe to")
    unknown = [t for t in event_types if t not in known]
    if unknown:
        raise Refused(f"未知のイベント種別です: {', '.join(unknown)}（contracts/asyncapi.yaml の一覧を参照）",
                      f"unknown event type(s): {', '.join(unknown)} (contracts/asyncapi.yaml lists them all)")
    dest = (dest or root / "services" / name).resolve()
    if dest.exists():
        raise Refused(f"フォルダ {dest} はすでにあります。何も書き込んでいません。",
                      f"the folder {dest} exists already; nothing was written")
    used = {s.get(key) for s in services.values() for key in ("port", "internal_port")}
    used |= {stack.get("console", {}).get("port")}
    port = next(p for p in range(FIRST_PORT, 65536) if p not in used)
    events = tuple(Consumed(type=t, model=known[t].__name__, module=_snake(known[t].__name__),
                            topic=_topic_constant(t), example=f"{t}/1.json")
                   for t in dict.fromkeys(event_types))
    return Plan(name, package, database, port, dest, root.resolve(), events)


def render(plan: Plan, into: Path) -> None:
    """Every template, its path's `__package__` and `__event__` filled in, rendered under `into`."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True)
    for template in sorted(p for p in TEMPLATES.rglob("*.j2")):
        relative = template.relative_to(TEMPLATES).as_posix()
        for event in plan.events if "__event__" in relative else (None,):
            path = relative.removesuffix(".j2").replace("__package__", plan.package)
            path = path.replace("__snake__", plan.database)
            if event is not None:
                path = path.replace("__event__", event.module)
            target = into / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(env.get_template(relative).render(plan=plan, event=event))


COMPOSE_MARK = "  # `make new-subscriber` adds each new subscriber service above this line.\n"


def compose_service(plan: Plan) -> str:
    """The service's block in docker-compose.yml, as the core services' are written."""
    upper = plan.name.upper().replace("-", "_")
    db_upper = plan.database.upper()
    return (
        f"  {plan.name}:\n"
        f"    <<: *service\n"
        f"    build: {{ context: ., dockerfile: deploy/docker/Dockerfile, args: {{ SERVICE_PACKAGE: tsunagu-{plan.name} }} }}\n"
        f"    command: [\"sh\", \"-c\", \"python -m {plan.package} migrate && exec python -m {plan.package} serve\"]\n"
        f"    ports: [\"127.0.0.1:{plan.port}:{plan.port}\"]\n"
        f"    environment:\n"
        f"      TSUNAGU_HTTP_HOST: 0.0.0.0\n"
        f"      TSUNAGU_HTTP_PORT: \"{plan.port}\"\n"
        f"      TSUNAGU_KAFKA_BOOTSTRAP: kafka:29092\n"
        f"      TSUNAGU_KAFKA_USERNAME: tsunagu-{plan.name}\n"
        f"      TSUNAGU_KAFKA_PASSWORD: ${{TSUNAGU_KAFKA_PASSWORD_{upper}}}\n"
        f"      TSUNAGU_DATABASE_URL: postgresql://{plan.database}:${{TSUNAGU_PASSWORD_{db_upper}}}"
        f"@postgres:5432/{plan.database}\n"
        f"      TSUNAGU_OTLP_ENDPOINT: http://otel-collector:4318\n"
        f"      TSUNAGU_SERVICE_SIGNING_KEY: ${{TSUNAGU_SIGNING_KEY_{upper}:?run make compose-env first}}\n"
        f"      TSUNAGU_SERVICE_CALLERS: ${{TSUNAGU_CALLERS_{upper}:?run make compose-env first}}\n"
        f"      TSUNAGU_STAFF_ISSUER: ${{TSUNAGU_STAFF_ISSUER:?run make compose-env first}}\n"
        f"      TSUNAGU_STAFF_AUDIENCE: ${{TSUNAGU_STAFF_AUDIENCE:?run make compose-env first}}\n"
        f"      TSUNAGU_STAFF_JWKS_URL: ${{TSUNAGU_STAFF_JWKS_URL:-file:///run/tsunagu/dev-jwks.json}}\n\n")


def compose_places(text: str) -> tuple[re.Match, list[re.Match]]:
    """Where docker-compose.yml takes a new service's database and password; Refused when its layout
    is not the one this scaffold writes into (checked before anything is written)."""
    databases = re.search(r"^(      TSUNAGU_DATABASES: )(.*)$", text, re.M)
    passwords = list(re.finditer(r"^      TSUNAGU_PASSWORD_\w+: .*\n", text, re.M))
    if COMPOSE_MARK not in text or databases is None or not passwords:
        raise Refused("docker-compose.yml の書式が想定と違うため、登録できません。",
                      "docker-compose.yml is not laid out as expected (its new-subscriber line is missing)")
    return databases, passwords


def register_in_compose(plan: Plan) -> None:
    """The service in docker-compose.yml (its block, its database and password for PostgreSQL's
    start-up script) and in Prometheus's targets, so compose runs what `make run` runs."""
    compose = plan.root / "docker-compose.yml"
    text = compose.read_text()
    databases, passwords = compose_places(text)
    password = (f"      TSUNAGU_PASSWORD_{plan.database.upper()}: "
                f"${{TSUNAGU_PASSWORD_{plan.database.upper()}:?run make compose-env first}}\n")
    end = passwords[-1].end()
    text = text[:end] + password + text[end:]
    text = text.replace(databases.group(0), f"{databases.group(0)} {plan.database}", 1)
    text = text.replace(COMPOSE_MARK, compose_service(plan) + COMPOSE_MARK, 1)
    compose.write_text(text)
    prometheus = plan.root / "deploy" / "prometheus" / "prometheus.yml"
    with prometheus.open("a") as f:
        f.write(f'      - targets: ["{plan.name}:{plan.port}"]\n        labels: {{ service: {plan.name} }}\n')


def register(plan: Plan) -> None:
    """The service's events in the registry's subscribers file, its process in deploy/stack.toml,
    docker-compose.yml and Prometheus's targets."""
    subscribers = plan.root / "contracts" / "src" / "tsunagu_contracts" / "subscribers.toml"
    events = ", ".join(f'"{e.type}"' for e in plan.events)
    with subscribers.open("a") as f:
        f.write(f"\n[subscribers.{plan.name}]\nevents = [{events}]\n")
    with (plan.root / "deploy" / "stack.toml").open("a") as f:
        f.write(f'\n# A subscriber made with `make new-subscriber`.\n[services.{plan.name}]\n'
                f'module = "{plan.package}"\nport = {plan.port}\ndatabase = "{plan.database}"\n')
    register_in_compose(plan)


def scaffold(root: Path, name: str, event_types: list[str], dest: Path | None = None) -> Plan:
    made = plan(root, name, event_types, dest)
    compose_places((root / "docker-compose.yml").read_text())
    # Rendered aside first: a template that fails leaves no half-written service behind.
    with tempfile.TemporaryDirectory(dir=made.dest.parent if made.dest.parent.exists() else None) as scratch:
        render(made, Path(scratch))
        made.dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(scratch, made.dest)
        Path(scratch).mkdir()  # TemporaryDirectory removes what it made
    register(made)
    return made


def find_root(start: Path) -> Path:
    for parent in (start, *start.parents):
        if (parent / "deploy" / "stack.toml").exists() and (parent / "contracts").is_dir():
            return parent
    raise Refused("リポジトリのルート（deploy/stack.toml）が見つかりません。", "deploy/stack.toml not found above here")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tsunagu-new-subscriber", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the service's name: [a-z][a-z0-9-]*")
    parser.add_argument("events", help="event types, comma-separated, e.g. tsunagu.referral.requested.v1")
    parser.add_argument("--dest", type=Path, default=None, help="folder to write (default services/<name>)")
    parser.add_argument("--root", type=Path, default=None, help="the repository (default: found above here)")
    args = parser.parse_args(argv)
    try:
        root = (args.root or find_root(Path.cwd())).resolve()
        made = scaffold(root, args.name, [e.strip() for e in args.events.split(",") if e.strip()], args.dest)
    except Refused as exc:
        sys.exit(f"[tsunagu] error: {exc.message_ja}\n[tsunagu] error: {exc.message_en}")
    where = made.dest.relative_to(root) if made.dest.is_relative_to(root) else made.dest
    print(f"[tsunagu] {made.name}: written to {where}; registered in contracts/src/tsunagu_contracts/"
          f"subscribers.toml and deploy/stack.toml (port {made.port}, database {made.database}).\n"
          f"[tsunagu] next: `make contracts` (the AsyncAPI document lists the new consumer), then "
          f"`make run` (docker-compose.yml and Prometheus's targets list it too); "
          f"its test: .venv/bin/pytest {where}/tests")


if __name__ == "__main__":
    main()
