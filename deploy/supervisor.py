"""Keeps the services of `make run` running: one that exits unexpectedly is started again.

Restarts back off exponentially (1 s, 2 s, 4 s ... 30 s), so a service that fails at once does not
spin and fill its log; one that stayed up a while counts as healthy again and its next restart
waits the shortest delay. Only the caller stops the services (Ctrl-C, `make stop`), never a crash
of one of them. Standard library only.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from proc import say, spawn_detached


@dataclass(frozen=True)
class RestartPolicy:
    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0
    """A process that ran this long before it exited is restarted after the first delay again."""

    def delay(self, failures_in_a_row: int) -> float:
        return min(self.max_delay, self.first_delay * 2 ** (failures_in_a_row - 1))


@dataclass
class Supervised:
    """One service process: how to start it, and how often it had to be started again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    pidfile: Path
    """Where `make stop` finds the process; it names a live process or does not exist."""
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures_in_a_row: int = 0
    restart_at: float | None = None

    def start(self, now: float) -> None:
        self.process = spawn_detached(self.argv, log=self.log, env=self.env)
        self.pidfile.write_text(str(self.process.pid))
        self.started_at, self.restart_at = now, None

    def exit_code(self) -> int | None:
        """The exit status once the process has ended (and is reaped), else None."""
        return self.process.poll() if self.process else None

    def check(self, now: float, policy: RestartPolicy) -> None:
        """Notice that the process exited and schedule its restart; start it once the delay has passed."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start(now)
                say(f"{self.name}: restarted (pid {self.process.pid})")
            return
        code = self.exit_code()
        if code is None:
            return
        # The pid may soon belong to another program: `make stop` must not signal it.
        self.pidfile.unlink(missing_ok=True)
        stayed_up = now - self.started_at >= policy.stable_after
        self.failures_in_a_row = 1 if stayed_up else self.failures_in_a_row + 1
        self.restarts += 1
        delay = policy.delay(self.failures_in_a_row)
        self.restart_at = now + delay
        say(f"{self.name} exited with {describe_exit(code)}; restarting in {delay:g} s (restart {self.restarts}); "
            f"its log: {self.log}")


def describe_exit(code: int) -> str:
    """`1`, or `-9 (SIGKILL)` for a process a signal ended (Popen's negative codes)."""
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return str(code)


def supervise(children: Iterable[Supervised], stopping: Callable[[], bool], policy: RestartPolicy = RestartPolicy(),
              poll_interval: float = 1.0) -> None:
    """Restart each child that exits, until `stopping()` is true; stopping the children is the caller's job."""
    children = list(children)
    while not stopping():
        now = time.monotonic()
        for child in children:
            child.check(now, policy)
        time.sleep(poll_interval)
