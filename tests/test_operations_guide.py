"""The alert rules are generated from one definition, each links to a section of docs/operations.md
that exists, and every command that guide gives is one the services really have."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tsunagu_servicehost import alerting
from tsunagu_servicehost.status import Figures, ServiceState, report, services_of
from tsunagu_teststack.infrastructure import stack_config

REPO = Path(__file__).resolve().parent.parent
GUIDE = (REPO / "docs/operations.md").read_text()
RULES = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
SERVICES = stack_config()["services"]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def commands(markdown: str) -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", markdown, re.S)
    return [shlex.split(line.split("  #")[0]) for block in blocks for line in block.splitlines() if line.strip()]


def test_the_rule_file_is_the_one_the_alert_definitions_generate():
    assert (REPO / "deploy/prometheus/alerts.yml").read_text() == alerting.rule_file(), \
        "regenerate with `make contracts`"


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_each_alert_says_how_urgent_it_is_what_it_means_and_links_to_what_to_do(rule):
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert rule["labels"]["audience"] in {"operations", "coordinators", "council"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    page, anchor = rule["annotations"]["runbook_url"].split("#")
    assert page == "docs/operations.md" and anchor in anchors(GUIDE)
    assert f"**{rule['alert']}**" in GUIDE, "the guide names the alert in its section"


def test_every_service_command_in_the_guide_is_one_the_service_has():
    modules = {svc["module"] for svc in SERVICES.values()}
    used = [(argv[2], argv[3:]) for argv in commands(GUIDE)
            if argv[:2] == [".venv/bin/python", "-m"] and argv[2] in modules]
    assert {"replay-dead-letters", "replay-outbox"} <= {args[0] for _, args in used}
    for module, args in used:
        helped = subprocess.run([sys.executable, "-m", module, args[0], "--help"], capture_output=True, text=True)
        assert helped.returncode == 0, helped.stderr
        for flag in (a.split("=")[0] for a in args[1:] if a.startswith("--")):
            assert flag in helped.stdout, f"{module} {args[0]} has no {flag}"


def test_every_http_call_in_the_guide_is_a_route_of_the_service_on_that_port():
    by_port = {str(svc["port"]): json.loads((REPO / "services" / name / "openapi.json").read_text())
               for name, svc in SERVICES.items()}
    calls = [argv for argv in commands(GUIDE) if argv[0] == "curl"]
    assert calls
    for argv in calls:
        url = next(a for a in argv if a.startswith("http://127.0.0.1:"))
        port, path = re.match(r"http://127\.0\.0\.1:(\d+)(/[^?]*)", url).groups()
        method = argv[argv.index("-X") + 1].lower() if "-X" in argv else "get"
        if path in {"/readyz", "/metrics"}:
            continue
        template = re.sub(r"<(\w+)>", r"{\1}", path)
        assert method in by_port[port]["paths"].get(template, {}), f"{method.upper()} {template} on {port}"


def test_status_flags_a_figure_past_its_alert_threshold_and_points_to_the_guide():
    waiting = Figures.parse('# TYPE tsunagu_dead_letters gauge\ntsunagu_dead_letters{topic="tsunagu.dlq.referral.v1"} 3\n')
    state = ServiceState("referral", "http://127.0.0.1:8002", answered=True, ready=True, figures=waiting)

    text, code = report([state])

    assert code == 1
    assert "  referral: 3 dead letters waiting デッドレター (replay-dead-letters)  -> " \
           "docs/operations.md#dead-letters" in text


def test_status_shows_the_console_by_its_readiness_with_no_pipeline_figures_to_flag():
    # The console exports HTTP metrics only: no lag, outbox or dead-letter figure is its to miss.
    console = ServiceState("console", "http://127.0.0.1:8000", answered=True, ready=True,
                           figures=Figures.parse("# TYPE tsunagu_http_requests counter\n"))
    referral = ServiceState("referral", "http://127.0.0.1:8002", answered=True, ready=True)

    text, code = report([referral, console])
    not_ready, _ = report([ServiceState("console", "http://127.0.0.1:8000", answered=True, ready=False,
                                        reasons={"referral": "unreachable"})])

    assert code == 0, text
    assert re.search(r"^  console +ready 準備完了 +- +- +- +- +-$", text, re.M), text
    assert re.search(r"^  referral +ready 準備完了 +0 +0 +0s +0 +0$", text, re.M), text
    assert "  console: not ready 準備未完了: referral: unreachable  -> docs/operations.md#" in not_ready


def test_make_status_looks_at_the_console_of_the_stack_file_beside_the_four_services():
    services = services_of(REPO / "deploy/stack.toml")

    assert set(services) == {*SERVICES, "console"}
    assert services["console"] == f"http://127.0.0.1:{stack_config()['console']['port']}"
