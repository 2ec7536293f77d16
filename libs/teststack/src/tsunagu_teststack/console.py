"""The web console as a real process, and a real browser (Debian's Chromium driven by Playwright)
to use it with.

Each page a test opens can be checked with `Browsing.check(page, name)`: axe-core (from
tests/browser/node_modules) runs on it and any WCAG 2.1 A/AA violation fails the test, and a
screenshot is kept under var/test-output/screenshots/ for people to look at.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from cryptography.fernet import Fernet

from tsunagu_teststack.infrastructure import repo_root
from tsunagu_teststack.services import ServiceProcess, free_port
from tsunagu_teststack.tokens import STAFF_AUDIENCE, STAFF_ISSUER, STAFF_KID, staff_key

AXE = repo_root() / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = repo_root() / "var" / "test-output" / "screenshots"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


class ConsoleProcess(ServiceProcess):
    """`python -m tsunagu_console serve` calling the given services, with the test session's staff
    issuer as its development sign-in."""

    def __init__(self, *, urls: dict[str, str], log_dir: Path, extra_env: dict[str, str] | None = None):
        self.service, self.module = "console", "tsunagu_console"
        self.port, self.internal_port = free_port(), None
        self.log_path = log_dir / f"console-{self.port}.log"
        self.database_url = ""
        self.process = None
        self.env = {
            **os.environ,
            "TSUNAGU_HTTP_HOST": "127.0.0.1", "TSUNAGU_HTTP_PORT": str(self.port),
            "TSUNAGU_CONSOLE_SESSION_KEYS": Fernet.generate_key().decode(),
            "TSUNAGU_CONSOLE_SECURE_COOKIES": "false",
            "TSUNAGU_CONSOLE_DEV_STAFF_KEY": staff_key(), "TSUNAGU_DEV_STAFF_KID": STAFF_KID,
            "TSUNAGU_STAFF_ISSUER": STAFF_ISSUER, "TSUNAGU_STAFF_AUDIENCE": STAFF_AUDIENCE,
            **{f"TSUNAGU_CONSOLE_{name.upper()}_URL": url for name, url in urls.items()},
            **(extra_env or {}),
        }
        if self.env.get("TSUNAGU_CONSOLE_OIDC_ISSUER") and not self.env.get("TSUNAGU_CONSOLE_OIDC_REDIRECT_URL"):
            self.env["TSUNAGU_CONSOLE_OIDC_REDIRECT_URL"] = f"http://127.0.0.1:{self.port}/signin/oidc/callback"

    async def migrate(self) -> None:
        """The console has no database."""


def chromium_path() -> str:
    """Debian's Chromium (`apt-get install chromium`), or TSUNAGU_TEST_CHROMIUM."""
    path = os.environ.get("TSUNAGU_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise AssertionError("the browser tests need Chromium: `apt-get install chromium fonts-noto-cjk` "
                             "(or set TSUNAGU_TEST_CHROMIUM)")
    return path


class Browsing:
    """Checks of a page as people meet it: accessibility, and a screenshot to look at."""

    def __init__(self, screenshots: Path = SCREENSHOTS):
        if not AXE.exists():
            raise AssertionError(f"{AXE} is missing: run `make deps` (npm ci --prefix tests/browser)")
        self.axe = AXE.read_text()
        self.screenshots = screenshots
        screenshots.mkdir(parents=True, exist_ok=True)

    async def check(self, page, name: str) -> None:
        """axe-core on the page as it is now (WCAG 2.1 A and AA); a screenshot of the whole page."""
        await page.screenshot(path=str(self.screenshots / f"{name}.png"), full_page=True)
        if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
            await page.add_script_tag(content=self.axe)
        result = await page.evaluate(
            "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS)
        violations = [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                       "nodes": [n["target"] for n in v["nodes"]][:5]} for v in result["violations"]]
        assert not violations, f"accessibility violations on {name} ({page.url}):\n" + json.dumps(
            violations, ensure_ascii=False, indent=2)


STAFF_ROLE_NAMES = {"counter": "相談窓口", "coordinator": "自立相談支援（コーディネーター）", "council": "居住支援協議会",
                    "ops": "運用担当"}
"""The sign-in page's radio button of each staff role."""


async def sign_in_as_staff(page, console_url: str, role: str) -> None:
    """Sign in on the console's sign-in page as a staff role (the development sign-in)."""
    await page.goto(f"{console_url}/signin")
    await page.get_by_role("radio", name=STAFF_ROLE_NAMES[role]).check()
    await page.get_by_role("button", name="職員としてサインイン").click()


async def sign_in_as_partner(page, console_url: str, partner_id: str, api_token: str) -> None:
    await page.goto(f"{console_url}/signin")
    await page.get_by_label("連携団体ID").fill(partner_id)
    await page.get_by_label("APIトークン").fill(api_token)
    await page.get_by_role("button", name="連携団体としてサインイン").click()
