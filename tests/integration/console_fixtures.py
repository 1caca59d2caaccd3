"""Fixtures of the web console's browser tests, loaded through `pytest_plugins`: Chromium driven by Playwright
(Debian's `chromium` package; Playwright's own browser download does not work on these machines), one fresh browser
context per page, and a watch on each page that fails the test on a script error, a Content-Security-Policy
violation, a dialog (`alert()`) or a request to any origin but the API's and the object store's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from tests.integration.api_helpers import ApiStack
from tests.integration.console_helpers import DESKTOP, OpenPage, Watched, chromium, origin


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(executable), args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
async def open_page(browser: Browser, api_stack: ApiStack) -> AsyncIterator[OpenPage]:
    """`await open_page(viewport=PHONE)`: a page in a fresh context (its own sessionStorage and cookies; further
    keywords go to `new_context`, e.g. `color_scheme="dark"`). At the end: no problems, and no request left the API's
    and the object store's origins (no CDN, nothing external)."""
    opened: list[Watched] = []

    async def open_one(*, viewport: dict[str, int] = DESKTOP, **options: Any) -> Watched:
        context = await browser.new_context(viewport=viewport, **options)
        page = await context.new_page()
        watched = Watched(page)
        page.on("pageerror", lambda error: watched.problems.append(f"uncaught: {error}"))
        page.on(
            "console",
            lambda message: (
                watched.problems.append(f"console: {message.text}")
                if "Content Security Policy" in message.text
                else None
            ),
        )
        page.on("dialog", lambda dialog: watched.problems.append(f"dialog: {dialog.message}"))
        page.on("request", lambda request: watched.urls.append(request.url))
        opened.append(watched)
        return watched

    yield open_one
    allowed = {origin(api_stack.url), origin(api_stack.settings.s3_endpoint_url or "")}
    for watched in opened:
        await watched.page.context.close()
        assert watched.problems == []
        strays = [url for url in watched.urls if not url.startswith(("blob:", "data:")) and origin(url) not in allowed]
        assert strays == []
