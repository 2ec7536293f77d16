"""Process and file helpers shared by the deploy scripts (standard library only).

The deploy scripts run before the Python environment exists, so they import nothing outside
the standard library.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
VAR = Path(os.environ.get("TSUNAGU_VAR_DIR", REPO / "var"))
CACHE = Path(os.environ.get("TSUNAGU_CACHE_DIR", Path.home() / ".cache" / "tsunagu"))
SECRETS_FILE = VAR / "secrets.json"


class StepFailed(Exception):
    """A deploy step failed; the message tells the person what to do."""


def stack() -> dict:
    with open(DEPLOY / "stack.toml", "rb") as f:
        return tomllib.load(f)


def say(message: str) -> None:
    try:
        print(f"[tsunagu] {message}", flush=True)
    except OSError:
        # The terminal or a pipe reader is gone (Ctrl-C on `make run | tee`): clean-up must go on.
        pass


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def terminate(*pids: int, timeout: float = 30.0) -> None:
    """SIGTERM each process group, wait, then SIGKILL what is left: a clean stop that never hangs.

    All are signalled at once, so the nodes of one Kafka cluster shut down together instead of
    the last one waiting for a quorum that has already left.
    """
    def signal_all(sig: int) -> None:
        for pid in pids:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass

    signal_all(signal.SIGTERM)
    if wait_until(lambda: not any(pid_alive(p) for p in pids), timeout, 0.1):
        return
    signal_all(signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 5, 0.1)


def spawn_detached(argv: list[str], log: Path, env: dict | None = None,
                   user: str | None = None) -> subprocess.Popen:
    """Start a long-running process in its own session, its output appended to `log`.

    Its own session keeps Ctrl-C in the terminal away from it: the supervisor decides when it stops.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            user=user,
        )
    return proc


def run(argv: list[str], *, what: str, user: str | None = None, input: str | None = None,
        env: dict | None = None, quiet: bool = True, cwd: Path | None = None) -> str:
    """Run a command to completion; on failure raise StepFailed with its output."""
    result = subprocess.run(
        argv, input=input, text=True, capture_output=quiet, user=user, env=env, cwd=cwd,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip() if quiet else ""
        raise StepFailed(f"{what} failed (exit {result.returncode}).\n{detail}".rstrip())
    return result.stdout or ""


PRIVATE_MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (secrets, tokens, keys, .env)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_MODE)
    with os.fdopen(fd, "w") as f:
        # O_CREAT's mode applies only to a new file: an existing one keeps whatever mode it had.
        os.fchmod(f.fileno(), PRIVATE_MODE)
        f.write(text)


def read_private(path: Path) -> str:
    """Read a secret file, first tightening it to 0600 when others may read or write it.

    A file of another user is refused: its owner, not this script, decides who may read it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as f:
        info = os.fstat(f.fileno())
        if info.st_mode & 0o077:
            if info.st_uid != os.geteuid():
                raise StepFailed(f"{path} may be read by others (mode {info.st_mode & 0o777:o}) and belongs to "
                                 f"another user; run `chmod 600 {path}` as its owner.")
            os.fchmod(f.fileno(), PRIVATE_MODE)
            say(f"{path} could be read by others (mode {info.st_mode & 0o777:o}); it is now 600")
        return f.read()


def kafka_principal(service: str) -> str:
    """The SCRAM user a service connects to Kafka as."""
    return f"tsunagu-{service}"


def dev_secrets() -> dict:
    """Local development secrets, generated once into var/secrets.json (git-ignored, mode 0600).

    `kafka` holds the SCRAM passwords of the tooling's super user (`tsunagu-admin`) and of each
    service's user (`tsunagu-<service>`), and the controller listener's PLAIN password."""
    VAR.mkdir(parents=True, exist_ok=True)
    data = json.loads(read_private(SECRETS_FILE)) if SECRETS_FILE.exists() else {}
    cfg = stack()
    wanted = [cfg["postgres"]["admin_role"], *(s["database"] for s in cfg["services"].values())]
    changed = False
    passwords = data.setdefault("postgres", {})
    for role in wanted:
        if role not in passwords:
            passwords[role] = secrets.token_urlsafe(24)
            changed = True
    # Ed25519 private keys are any 32 random bytes: each service's own, and the development staff issuer's.
    signing = data.setdefault("signing_keys", {})
    for name in [*cfg["services"], "dev-staff-issuer"]:
        if name not in signing:
            signing[name] = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
            changed = True
    kafka = data.setdefault("kafka", {})
    for user in ["tsunagu-admin", "tsunagu-controller", *(kafka_principal(name) for name in cfg["services"])]:
        if user not in kafka:
            kafka[user] = secrets.token_urlsafe(24)
            changed = True
    for name, make in (("intake_pii_key", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()),
                       ("intake_index_key", lambda: secrets.token_urlsafe(32)),
                       ("partners_secret_key", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()),
                       ("housing_pii_key", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()),
                       ("console_session_key", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode())):
        if name not in data:
            data[name] = make()
            changed = True
    if changed:
        write_private(SECRETS_FILE, json.dumps(data, indent=2))
    return data


def main_guard(fn) -> None:
    """Run a deploy command; a failed step prints a clear message and exits 1, not a traceback."""
    try:
        code = fn()
    except StepFailed as exc:
        print(f"[tsunagu] error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code or 0)
