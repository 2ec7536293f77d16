"""`make run` keeps its services running: one that exits is started again, with growing delays.

The supervision loop of deploy/stack.py runs here on stand-in processes, so the test needs none
of `make run`'s fixed ports.
"""

import os
import signal
import sys
import time

import pytest

from tsunagu_teststack.infrastructure import repo_root

sys.path.insert(0, str(repo_root() / "deploy"))
from supervisor import RestartPolicy, Supervised, supervise  # noqa: E402

SLEEPS = [sys.executable, "-c", "import time; time.sleep(120)"]
FAILS_AT_ONCE = [sys.executable, "-c", "raise SystemExit(3)"]


@pytest.fixture
def stand_in(tmp_path):
    made = []

    def make(argv: list[str], name: str = "intake") -> Supervised:
        made.append(Supervised(name, argv, dict(os.environ), tmp_path / f"{name}.log", tmp_path / f"{name}.pid"))
        return made[-1]

    yield make
    for child in made:
        if child.exit_code() is None:
            child.process.kill()
            child.process.wait()


def at_most(checks: int, until):
    """A `stopping` predicate for the supervisor: true once `until()` holds, or after `checks` calls."""
    calls = iter(range(checks))
    return lambda: until() or next(calls, None) is None


def test_a_service_killed_with_sigkill_is_started_again_and_the_restart_is_logged(stand_in, capsys):
    service = stand_in(SLEEPS)
    service.start(time.monotonic())
    killed = service.process
    os.kill(killed.pid, signal.SIGKILL)

    supervise([service], at_most(1000, until=lambda: service.process is not killed),
              policy=RestartPolicy(first_delay=0.01), poll_interval=0.01)

    assert service.process is not killed, "the supervisor gave up waiting for the restart"
    assert service.exit_code() is None, "the new process is running"
    assert service.pidfile.read_text() == str(service.process.pid), "`make stop` finds the new process"
    out = capsys.readouterr().out
    assert "intake exited with -9 (SIGKILL); restarting in 0.01 s (restart 1)" in out
    assert f"intake: restarted (pid {service.process.pid})" in out


def test_the_other_services_are_left_alone_while_one_is_restarted(stand_in):
    crashing, steady = stand_in(SLEEPS, "intake"), stand_in(SLEEPS, "referral")
    for service in (crashing, steady):
        service.start(time.monotonic())
    killed, untouched = crashing.process, steady.process
    os.kill(killed.pid, signal.SIGKILL)

    supervise([crashing, steady], at_most(1000, until=lambda: crashing.process is not killed),
              policy=RestartPolicy(first_delay=0.01), poll_interval=0.01)

    assert steady.process is untouched and steady.exit_code() is None
    assert steady.restarts == 0


def test_restarts_wait_one_second_doubling_to_thirty():
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_service_that_keeps_failing_waits_longer_each_time_and_one_that_stayed_up_starts_again_soon(stand_in):
    # The clock is given by hand; only the processes' exits are real.
    policy = RestartPolicy(first_delay=1, max_delay=30, stable_after=60)
    service = stand_in(FAILS_AT_ONCE)
    delays = []
    now = 0.0
    service.start(now)
    for _ in range(3):
        service.process.wait()
        service.check(now, policy)  # notices the exit
        delays.append(service.restart_at - now)
        assert not service.pidfile.exists(), "no pid file names a process that has gone"
        exited = service.process
        service.check(service.restart_at - 0.5, policy)  # too early: not yet
        assert service.process is exited
        now = service.restart_at
        service.check(now, policy)  # starts it again
    service.process.wait()
    now += 61  # this time it ran longer than `stable_after` before it exited
    service.check(now, policy)
    delays.append(service.restart_at - now)

    assert delays == [1, 2, 4, 1]
    assert service.restarts == 4
