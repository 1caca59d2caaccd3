"""Shared pieces of the web console's browser tests: where the browser is, the viewports, what a page is watched for,
signing in through the form, and screenshots."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from playwright.async_api import Page, expect

from tests.support import REPO

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS_ENV = "VIDGEN_CONSOLE_SCREENSHOTS"  # a folder (e.g. docs) that receives the screenshots as well
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
# The browser shares two cores with the API, the workers and other test processes: every expectation may wait up to
# 30 s for its condition (Playwright's default is 5 s), and passes as soon as it holds.
expect.set_options(timeout=30_000)
# The settings of a console module's API (api_fixtures.api_stack) and the workers started beside it: no fixed port,
# progress on every step (so the bar moves), a group that notices a stopped worker within seconds.
CONSOLE_SETTINGS: dict[str, object] = {
    "http_host": "127.0.0.1",
    "http_port": 0,
    "progress_interval_s": 0.0,
    "session_timeout_ms": 6_000,
    "heartbeat_interval_ms": 500,
    "shutdown_grace_s": 10,
}


def chromium() -> Path:
    """The browser, or a skip with the reason; on CI (`CI` set, as `.ci/run` does) a missing browser is a failure,
    since `.ci/run` installs it."""
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"the console's browser tests need Debian's chromium at {CHROMIUM} (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/run should have installed it")
    pytest.skip(reason)


@dataclass
class Watched:
    """A page and what it did that a test may not allow."""

    page: Page
    problems: list[str] = field(default_factory=list)  # uncaught errors, CSP violations, alert() and friends
    urls: list[str] = field(default_factory=list)  # every request it made


OpenPage = Callable[..., Awaitable[Watched]]


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def sign_in(page: Page, url: str, credential: str) -> None:
    """Through the form, with the keyboard: type the credential, press Enter once the form can be sent (its button is
    disabled until the console's script handles it). The credential never reaches the page's URL."""
    await page.goto(f"{url}/")
    await page.get_by_test_id("signin-key").fill(credential)
    await expect(page.get_by_test_id("signin-submit")).to_be_enabled()
    await page.get_by_test_id("signin-key").press("Enter")
    await expect(page.get_by_test_id("signout")).to_be_visible()
    assert credential not in page.url


async def screenshot(page: Page, name: str, folder: Path) -> Path:
    """`console-<name>.png` in the test's folder, and in $VIDGEN_CONSOLE_SCREENSHOTS (relative to the repository)
    when set, which is how docs/console-*.png are refreshed: there as a 256-colour PNG, small enough to commit."""
    path = folder / f"console-{name}.png"
    await page.screenshot(path=str(path))
    target = os.environ.get(SCREENSHOTS_ENV)
    if target:
        with Image.open(path) as shot:
            shot.convert("RGB").quantize(256).save(REPO / target / path.name, optimize=True)
    return path
