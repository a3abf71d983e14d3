"""A signed-in Chromium page whose requests off the test server are blocked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.browser.test_approve_in_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    require_chromium,
)


@contextmanager
def signed_in_page(
    server_url: str,
    username: str,
    password: str,
    init_script: str = "",
) -> Iterator[tuple[Any, list[str]]]:
    """Yield a page logged in as `username` and the requests it tried elsewhere.

    Every request that does not go to `server_url` is aborted and listed, so a
    test can assert that a page needs no network beyond the console.
    """
    require_chromium()
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(server_url):
            request_route.continue_()
            return
        blocked.append(f"{request_route.request.resource_type} {url}")
        request_route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            if init_script:
                context.add_init_script(init_script)
            context.route("**/*", route)
            tab = context.new_page()
            tab.set_default_timeout(TIMEOUT_MS)
            tab.goto(f"{server_url}/login/")
            tab.fill("#id_username", username)
            tab.fill("#id_password", password)
            tab.click("#login-submit")
            tab.wait_for_url(f"{server_url}/")
            yield tab, blocked
        finally:
            browser.close()
