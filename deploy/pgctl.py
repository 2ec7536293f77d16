#!/usr/bin/env python3
"""PostgreSQL for the local stack, from Debian's packages, in a data directory of its own.

    pgctl.py start      install if missing, initialise once, start on 127.0.0.1:5432, provision
    pgctl.py stop
    pgctl.py status
    pgctl.py reset      stop and remove the data directory

Provisioning gives every service its own database and login role; PUBLIC may not connect, so one
service's role cannot open another service's database. An admin role (CREATEDB, CREATEROLE) makes
scratch databases for tests. Passwords are generated into var/secrets.json. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc import (  # noqa: E402
    REPO, VAR, StepFailed, dev_secrets, main_guard, port_open, run, say, stack, wait_until,
)

IS_ROOT = os.geteuid() == 0
# PostgreSQL refuses to run as root; as root we run it as Debian's `postgres` user.
DB_OS_USER = "postgres" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name


def state_dir() -> Path:
    if "TSUNAGU_PG_DIR" in os.environ:
        return Path(os.environ["TSUNAGU_PG_DIR"])
    if IS_ROOT:
        # The `postgres` user may not be able to reach a checkout under /root, so its data lives
        # in its own home, one directory per checkout.
        tag = hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
        return Path("/var/lib/postgresql/tsunagu") / tag
    return VAR / "postgres"


def bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return candidates[-1].parent if candidates else None


def install() -> Path:
    found = bindir()
    if found:
        return found
    if not IS_ROOT or shutil.which("apt-get") is None:
        raise StepFailed("PostgreSQL is not installed. Install Debian's `postgresql` package "
                         "(sudo apt-get install postgresql) and run this again.")
    say("installing PostgreSQL from Debian's packages")
    # This stack runs PostgreSQL in its own data directory: keep the package from creating and
    # starting a `main` cluster on the same port.
    conf_d = Path("/etc/postgresql-common/createcluster.d")
    conf_d.mkdir(parents=True, exist_ok=True)
    (conf_d / "50-tsunagu-no-main.conf").write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update"], what="apt-get update", env=env)
    run(["apt-get", "install", "-y", "--no-install-recommends", "postgresql", "postgresql-contrib"],
        what="Installing PostgreSQL", env=env)
    found = bindir()
    if not found:
        raise StepFailed("PostgreSQL was installed but its programs were not found under /usr/lib/postgresql.")
    return found


def pg(bin_: Path, tool: str, *args: str, what: str, input: str | None = None) -> str:
    return run([str(bin_ / tool), *args], what=what, input=input, user=DB_OS_USER if IS_ROOT else None)


def running(bin_: Path, data: Path) -> bool:
    if not (data / "PG_VERSION").exists():
        return False
    try:
        pg(bin_, "pg_ctl", "status", "-D", str(data), what="pg_ctl status")
        return True
    except StepFailed:
        return False


def initialise(bin_: Path, root: Path) -> None:
    data = root / "data"
    if (data / "PG_VERSION").exists():
        return
    cfg = stack()["postgres"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "run").mkdir(exist_ok=True)
    (root / "log").mkdir(exist_ok=True)
    if IS_ROOT:
        shutil.chown(root, DB_OS_USER, DB_OS_USER)
        for sub in ("run", "log"):
            shutil.chown(root / sub, DB_OS_USER, DB_OS_USER)
    say(f"initialising a PostgreSQL cluster in {data}")
    pg(bin_, "initdb", "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
       "--auth-local=peer", "--auth-host=scram-sha-256", what="initdb")
    with open(data / "postgresql.conf", "a") as f:
        f.write(
            "\n# Tsunagu local stack\n"
            f"listen_addresses = '{cfg['host']}'\n"
            f"port = {cfg['port']}\n"
            f"unix_socket_directories = '{root / 'run'}'\n"
            "max_connections = 200\n"
            "password_encryption = 'scram-sha-256'\n"
            "log_destination = 'stderr'\n"
        )
    if not IS_ROOT:
        # peer authentication maps the OS user to a database role of the same name.
        with open(data / "pg_ident.conf", "a") as f:
            f.write(f"local_admin {DB_OS_USER} postgres\n")
        hba = (data / "pg_hba.conf").read_text().replace(
            "local   all             all                                     peer",
            "local   all             all                                     peer map=local_admin")
        (data / "pg_hba.conf").write_text(hba)


def psql_admin(bin_: Path, root: Path, script: str) -> str:
    cfg = stack()["postgres"]
    return pg(bin_, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(root / "run"),
              "-p", str(cfg["port"]), "-U", "postgres", "-d", "postgres", "-f", "-",
              what="Provisioning PostgreSQL roles and databases", input=script)


def provision(bin_: Path, root: Path) -> None:
    cfg = stack()
    passwords = dev_secrets()["postgres"]
    admin = cfg["postgres"]["admin_role"]
    lines = []

    def role(name: str, attrs: str) -> None:
        lines.append(f"\\set pw '{passwords[name]}'")
        lines.append(
            f"SELECT format('CREATE ROLE %I', '{name}') WHERE NOT EXISTS "
            f"(SELECT FROM pg_roles WHERE rolname = '{name}') \\gexec")
        lines.append(f"ALTER ROLE \"{name}\" {attrs} PASSWORD :'pw';")

    role(admin, "LOGIN CREATEDB CREATEROLE")
    # Dropping a scratch database WITH (FORCE) ends the sessions still in it, whoever's they are.
    lines.append(f'GRANT pg_signal_backend TO "{admin}";')
    for service in cfg["services"].values():
        db = service["database"]
        role(db, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        lines.append(
            f"SELECT format('CREATE DATABASE %I OWNER %I', '{db}', '{db}') WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{db}') \\gexec")
        lines.append(f'REVOKE ALL ON DATABASE "{db}" FROM PUBLIC;')
        lines.append(f'GRANT CONNECT, TEMPORARY ON DATABASE "{db}" TO "{db}";')
    psql_admin(bin_, root, "\n".join(lines) + "\n")


def start() -> bool:
    """Start (or reuse) the cluster and provision it; returns False when it was already running."""
    cfg = stack()["postgres"]
    bin_ = install()
    root = state_dir()
    data = root / "data"
    started = False
    if running(bin_, data):
        say(f"PostgreSQL is already running on {cfg['host']}:{cfg['port']}; reusing it")
    else:
        if port_open(cfg["host"], cfg["port"]):
            raise StepFailed(
                f"port {cfg['host']}:{cfg['port']} is already in use by another program (another "
                f"PostgreSQL?), so the stack's PostgreSQL cannot start. Stop it and retry.")
        initialise(bin_, root)
        say(f"starting PostgreSQL on {cfg['host']}:{cfg['port']}")
        pg(bin_, "pg_ctl", "start", "-D", str(data), "-w", "-t", "60", "-l", str(root / "log" / "postgres.log"),
           what=f"Starting PostgreSQL (log: {root / 'log' / 'postgres.log'})")
        started = True
    if not wait_until(lambda: port_open(cfg["host"], cfg["port"]), 30):
        raise StepFailed(f"PostgreSQL did not open {cfg['host']}:{cfg['port']}")
    provision(bin_, root)
    say(f"PostgreSQL is ready on {cfg['host']}:{cfg['port']}")
    return started


def stop() -> None:
    bin_ = bindir()
    data = state_dir() / "data"
    if bin_ and running(bin_, data):
        pg(bin_, "pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w", what="Stopping PostgreSQL")
        say("stopped PostgreSQL")


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "start":
        start()
    elif command == "stop":
        stop()
    elif command == "reset":
        stop()
        shutil.rmtree(state_dir(), ignore_errors=True)
        say(f"removed {state_dir()}")
    elif command == "status":
        bin_ = bindir()
        up = bool(bin_) and running(bin_, state_dir() / "data")
        print(f"PostgreSQL in {state_dir()}: {'running' if up else 'stopped'}")
        return 0 if up else 3
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    main_guard(main)
