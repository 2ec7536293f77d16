"""`make status`: the running stack on one screen, from each service's /readyz and /metrics.

    python -m tsunagu_servicehost.status [--stack deploy/stack.toml] [--service NAME=URL ...]

Exits 1 when something needs a person (a service down or not ready, a figure past the threshold
its alert rule uses: tsunagu_servicehost.alerting), 0 otherwise. The web console is a row too: its
readiness (whether it reaches the four APIs) only, as it has no consumer and no outbox. The figures for coordinators and
the council (overdue referrals, check-ins to follow up) are shown, but are theirs to act on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
import unicodedata
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families

from tsunagu_servicehost import alerting

CONSOLE = "console"
"""The stack's `[console]`: web pages over the services' APIs, with no consumer, outbox or dead letters."""

SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("_count", "_sum", "_created")}


@dataclass
class Figures:
    """One scrape of /metrics."""

    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    """Every sample name the service exports, also of metrics with no sample yet (a counter no label set has used)."""

    @classmethod
    def parse(cls, text: str) -> "Figures":
        figures = cls()
        for family in text_string_to_metric_families(text):
            figures.names.update([family.name] if family.type not in SUFFIXES else
                                 [family.name + suffix for suffix in SUFFIXES[family.type]])
            for sample in family.samples:
                figures.names.add(sample.name)
                figures.samples.append((sample.name, sample.labels, sample.value))
        return figures

    def matching(self, name: str, **labels: str) -> list[float]:
        return [value for n, got, value in self.samples
                if n == name and all(got.get(k) == v for k, v in labels.items())]

    def total(self, name: str, **labels: str) -> float:
        return sum(self.matching(name, **labels))

    def largest(self, name: str, **labels: str) -> float:
        return max(self.matching(name, **labels), default=0.0)


@dataclass
class ServiceState:
    name: str
    url: str
    answered: bool = False
    ready: bool = False
    reasons: dict[str, str] = field(default_factory=dict)
    figures: Figures = field(default_factory=Figures)

    @property
    def pipeline(self) -> bool:
        """Whether it consumes events and publishes through an outbox (all but the console), so the
        lag, outbox and dead-letter figures are its to show and to be judged by."""
        return self.name != CONSOLE


def ops_headers() -> dict[str, str]:
    """A token of the ops role, so /readyz says why a service is not ready: TSUNAGU_OPS_TOKEN (one
    from the city's identity provider), else the development issuer's in `make run`'s
    var/dev-tokens.json; none when neither is there (the status codes still tell ready or not)."""
    token = os.environ.get("TSUNAGU_OPS_TOKEN", "")
    tokens_file = Path(os.environ.get("TSUNAGU_VAR_DIR", "var")) / "dev-tokens.json"
    if not token and tokens_file.exists():
        token = json.loads(tokens_file.read_text()).get("ops", "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _get(url: str, timeout: float, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def probe(name: str, url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> ServiceState:
    state = ServiceState(name, url)
    try:
        status, body = _get(f"{url}/readyz", timeout, headers)
    except OSError as exc:
        state.reasons["process"] = f"no answer ({getattr(exc, 'reason', exc)})"
        return state
    state.answered, state.ready = True, status == 200
    try:
        state.reasons = {k: v for k, v in (json.loads(body).get("checks") or {}).items() if v != "ok"}
    except (ValueError, AttributeError):
        state.reasons = {}
    if status != 200 and not state.reasons:
        # Without an ops token /readyz answers only its status code.
        state.reasons = {"readyz": f"HTTP {status}"}
    try:
        state.figures = Figures.parse(_get(f"{url}/metrics", timeout)[1])
    except (OSError, ValueError) as exc:
        state.reasons["metrics"] = f"unreadable ({type(exc).__name__})"
    return state


@dataclass(frozen=True)
class Finding:
    service: str
    text: str
    alert: str

    def line(self) -> str:
        anchor = alerting.by_name(self.alert).anchor
        return f"  {self.service}: {self.text}  -> {alerting.RUNBOOK}#{anchor}"


def findings(state: ServiceState) -> list[Finding]:
    """What needs a person, by the thresholds the alert rules use."""
    if not state.answered:
        return [Finding(state.name, f"not running 停止中 ({state.reasons['process']})", "TsunaguServiceDown")]
    found = [Finding(state.name, f"not ready 準備未完了: {check}: {why}", "TsunaguServiceNotReady")
             for check, why in state.reasons.items()]
    if not state.pipeline:
        return found
    f = state.figures
    checks = (
        (f.largest("tsunagu_consumer_lag_records"), alerting.CONSUMER_LAG_RECORDS, "TsunaguConsumerLagHigh",
         "records behind on one partition 未処理"),
        (f.largest("tsunagu_outbox_backlog"), alerting.OUTBOX_BACKLOG_ROWS, "TsunaguOutboxBacklog",
         "outbox rows waiting 未送信"),
        (f.largest("tsunagu_outbox_oldest_unpublished_age_seconds"), alerting.OUTBOX_OLDEST_AGE_S,
         "TsunaguOutboxOldestRowOld", "s since the oldest outbox row was written 最古の未送信"),
        (f.largest("tsunagu_outbox_parked"), alerting.OUTBOX_PARKED_ROWS, "TsunaguOutboxRowsParked",
         "outbox rows parked 保留 (replay-outbox)"),
        (f.total("tsunagu_dead_letters"), alerting.DEAD_LETTERS, "TsunaguDeadLettersWaiting",
         "dead letters waiting デッドレター (replay-dead-letters)"),
        (f.largest("tsunagu_partners_webhooks_disabled"), alerting.WEBHOOKS_DISABLED,
         "TsunaguWebhookEndpointsDisabled", "partner webhook endpoints disabled 停止中の Webhook"),
        (f.largest("tsunagu_partners_held_events_oldest_age_seconds"), alerting.HELD_EVENTS_OLDEST_AGE_S,
         "TsunaguHeldNotificationsOld", "s the oldest held notification has waited 同意待ち"),
    )
    found += [Finding(state.name, f"{value:g} {what}", alert) for value, limit, alert, what in checks if value > limit]
    return found


def _pad(text: str, width: int) -> str:
    """Left-aligned in `width` terminal columns: kana and kanji take two each."""
    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(1, width - used)


def _row(state: ServiceState) -> str:
    f = state.figures
    if not state.answered:
        readiness, figures = "DOWN 停止", ""
    else:
        readiness = "ready 準備完了" if state.ready else "NOT READY 準備未完了"
        figures = (
            f"{f.total('tsunagu_consumer_lag_records'):>6g} {f.largest('tsunagu_outbox_backlog'):>7g} "
            f"{f.largest('tsunagu_outbox_oldest_unpublished_age_seconds'):>7.0f}s {f.largest('tsunagu_outbox_parked'):>6g} "
            f"{f.total('tsunagu_dead_letters'):>6g}") if state.pipeline else (
            f"{'-':>6} {'-':>7} {'-':>8} {'-':>6} {'-':>6}")  # nothing of the kind to count
    return f"  {_pad(state.name, 22)}{_pad(readiness, 22)}{figures}".rstrip()


def _domain_lines(states: dict[str, ServiceState]) -> list[str]:
    lines = []
    if (p := states.get("partner-notification")) and p.answered:
        f = p.figures
        lines.append(f"  partners 連携団体   webhooks disabled 停止中 {f.largest('tsunagu_partners_webhooks_disabled'):g}, "
                     f"deliveries waiting 送信待ち {f.total('tsunagu_webhook_deliveries_waiting'):g}, "
                     f"held 同意待ち {f.largest('tsunagu_partners_held_events'):g} (oldest "
                     f"{f.largest('tsunagu_partners_held_events_oldest_age_seconds'):.0f}s)")
    if (r := states.get("referral")) and r.answered:
        f = r.figures
        lines.append(f"  referrals 紹介      overdue 期限超過 {f.largest('tsunagu_referrals_overdue'):g}, "
                     f"unreachable 不達 {f.largest('tsunagu_referrals_unreachable'):g}, "
                     f"cases without contact 連絡途絶 {f.largest('tsunagu_cases_without_contact'):g}  (coordinators)")
    if (h := states.get("housing-support")) and h.answered:
        f = h.figures
        lines.append(f"  housing 居住支援    check-ins to follow up 要フォロー "
                     f"{f.total('tsunagu_housing_check_ins_to_follow_up'):g}, tasks overdue 期限超過 "
                     f"{f.largest('tsunagu_housing_tasks_overdue'):g}  (council)")
    return lines


def report(states: list[ServiceState], now: datetime | None = None) -> tuple[str, int]:
    """The screen, and the exit code: 1 when something needs a person."""
    now = now or datetime.now(ZoneInfo("Asia/Tokyo"))
    found = [finding for state in states for finding in findings(state)]
    lines = [f"Tsunagu status 稼働状況  {now:%Y-%m-%d %H:%M:%S %Z}",
             f"  {_pad('service サービス', 22)}{_pad('readiness 準備', 22)}{'lag':>6} {'outbox':>7} {'oldest':>8} "
             f"{'parked':>6} {'dead':>6}",
             *(_row(state) for state in states), *_domain_lines({s.name: s for s in states})]
    if not any(state.answered for state in states):
        lines.append("No service answers: is the stack running? (`make run` starts it)")
    if found:
        lines += ["Needs a person 要対応:", *(finding.line() for finding in found)]
    else:
        lines.append("Nothing needs a person 対応が必要なものはありません.")
    return "\n".join(lines), 1 if found else 0


def services_of(stack_file: Path) -> dict[str, str]:
    with open(stack_file, "rb") as f:
        stack = tomllib.load(f)
    services = {name: f"http://127.0.0.1:{svc['port']}" for name, svc in stack["services"].items()}
    if CONSOLE in stack:
        services[CONSOLE] = f"http://127.0.0.1:{stack[CONSOLE]['port']}"
    return services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The running Tsunagu stack on one screen.")
    parser.add_argument("--stack", type=Path, default=Path("deploy/stack.toml"),
                        help="the stack's ports (default: deploy/stack.toml)")
    parser.add_argument("--service", action="append", default=[], metavar="NAME=URL",
                        help="look at these services instead of the stack's (repeatable)")
    args = parser.parse_args(argv)
    services = (dict(s.split("=", 1) for s in args.service) if args.service else services_of(args.stack))
    headers = ops_headers()
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        states = list(pool.map(lambda item: probe(*item, headers=headers), services.items()))
    text, code = report(states)
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
