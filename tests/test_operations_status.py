"""`make status` shows the running stack on one screen and exits non-zero when something needs a
person; the alert rules and the dashboard read only figures the services really export.

The four services and the web console run as real processes on the real broker and database; the
status command runs as `make status` runs it, in a process of its own.
"""

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tsunagu_servicehost.status import Figures
from tsunagu_teststack.infrastructure import stack_config
from tsunagu_teststack.tokens import bearer_token
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parent.parent
SERVICES = list(stack_config()["services"])


@pytest.fixture
async def running(service_process):
    intake = await service_process("intake")
    others = await asyncio.gather(*(service_process(name, extra_env={"TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url})
                                    for name in SERVICES if name != "intake"))
    running = {"intake": intake, **{p.service: p for p in others}}
    console = await service_process("console", urls={
        "intake": intake.url, "referral": running["referral"].url, "housing": running["housing-support"].url,
        "partners": running["partner-notification"].url})
    return running | {"console": console}


async def status(services: dict) -> subprocess.CompletedProcess:
    args = [f"--service={name}={process.url}" for name, process in services.items()]
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "tsunagu_servicehost.status", *args],
                                   capture_output=True, text=True, timeout=60)


async def test_status_shows_every_service_and_the_console_ready_and_exits_0_then_names_a_stopped_service_and_exits_1(
        running):
    healthy = await eventually(lambda: status(running), until=lambda out: out.returncode == 0, attempts=60,
                               pause=0.5)
    await running["referral"].stop()
    broken = await status(running)

    assert healthy.stderr == ""
    for name in SERVICES:
        assert re.search(rf"^  {re.escape(name)} +ready 準備完了 +0 +0 +0s +0 +0$", healthy.stdout, re.M), healthy.stdout
    assert re.search(r"^  console +ready 準備完了 +- +- +- +- +-$", healthy.stdout, re.M), healthy.stdout
    assert "Nothing needs a person 対応が必要なものはありません." in healthy.stdout
    assert "overdue 期限超過 0" in healthy.stdout and "webhooks disabled 停止中 0" in healthy.stdout
    assert broken.returncode == 1, broken.stdout
    assert re.search(r"^  referral +DOWN 停止", broken.stdout, re.M), broken.stdout
    assert "Needs a person 要対応:" in broken.stdout
    assert re.search(r"^  referral: not running 停止中 .*-> docs/operations\.md#service-down$", broken.stdout, re.M)
    assert re.search(r"^  intake +ready 準備完了", broken.stdout, re.M), "the others are still ready"
    assert re.search(r"^  console: not ready 準備未完了: referral: unreachable ", broken.stdout, re.M), (
        "the console cannot reach referral")


async def test_status_sends_an_ops_token_so_a_service_that_is_not_ready_says_why(service_process):
    unreachable = "postgresql://nobody:secret-password@127.0.0.1:1/nothing"
    referral = await service_process("referral", database_url=unreachable, migrate=False)
    args = [sys.executable, "-m", "tsunagu_servicehost.status", f"--service=referral={referral.url}"]

    with_secret = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=60,
                                          env={**os.environ, "TSUNAGU_OPS_TOKEN": bearer_token("ops")})
    without = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=60,
                                      env={**os.environ, "TSUNAGU_OPS_TOKEN": "", "TSUNAGU_VAR_DIR": "/nonexistent"})

    assert with_secret.returncode == without.returncode == 1
    assert re.search(r"^  referral: not ready 準備未完了: database: unreachable: ", with_secret.stdout, re.M), (
        with_secret.stdout)
    assert re.search(r"^  referral: not ready 準備未完了: readyz: HTTP 503 ", without.stdout, re.M), without.stdout
    assert "secret-password" not in with_secret.stdout


async def test_alert_rules_and_the_dashboard_read_only_metrics_the_services_export(running):
    exported = {"up"}  # Prometheus' own: whether a scrape answered
    async with httpx.AsyncClient(timeout=10) as client:
        for process in running.values():
            exported |= Figures.parse((await client.get(f"{process.url}/metrics")).text).names
    rules = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/tsunagu.json").read_text())
    panel_exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]

    for expr in [rule["expr"] for rule in rules] + panel_exprs:
        used = set(re.findall(r"\btsunagu_[a-z0-9_]+|\bup(?=\{)", expr))
        assert used, f"no metric in {expr!r}"
        assert used <= exported, f"{expr!r} reads {sorted(used - exported)}, which no service exports"
