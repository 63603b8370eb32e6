"""Headless Chromium (Debian's ``chromium``, driven by Playwright) against a real server on port 0.

Playwright's own browser downloads are never used: ``executable_path`` is the system Chromium. Without it
the browser tests skip, except under CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.models import EchoModel
from tests.required import unavailable
from tests.serving import ServeModule, ThreadedServer

CHROMIUM = Path(os.environ.get("MODELWIRE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_saved: list[Path] = []


def save_artifact(name: str) -> Path:
    """Where a test keeps a file worth looking at after the run (``tests/artifacts/``, git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    _saved.append(path)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _saved:
        terminalreporter.write_line("dashboard screenshots: " + ", ".join(str(p) for p in _saved))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install it with `apt-get install chromium`"
        unavailable(message)

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    """The default sentiment model and an echo model; metrics published five times a second."""
    return serve_module(
        EchoModel("echo"), events={"metrics_interval_s": 0.2}, limits={"shutdown_grace_s": 1.0}
    )


@dataclass
class PageWatch:
    """What a page did that a test must not let pass: console errors, uncaught errors, foreign hosts."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    def on_console(self, kind: str, text: str) -> None:
        # Chromium logs every 4xx/5xx answer as a console error; a test that asks for one says so.
        status = re.search(r"responded with a status of (\d{3})", text)
        if kind == "error" and not (status and int(status.group(1)) in self.expected_statuses):
            self.console_errors.append(text)

    def on_request(self, url: str) -> None:
        self.requests.append(url)
        parts = urlsplit(url)
        if parts.scheme not in {"data", "blob", "about"} and parts.hostname not in LOOPBACK:
            self.foreign_requests.append(url)


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
def page(browser: Browser, server: ThreadedServer, watch: PageWatch) -> Iterator[Page]:
    """A fresh page (light theme, desktop size); fails the test on console errors or non-loopback fetches."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme="light")
    context.set_default_timeout(30_000)
    new_page = context.new_page()
    new_page.on("console", lambda m: watch.on_console(m.type, m.text))
    new_page.on("pageerror", lambda e: watch.page_errors.append(str(e)))
    new_page.on("request", lambda r: watch.on_request(r.url))
    new_page.on("websocket", lambda ws: watch.on_request(ws.url))
    try:
        yield new_page
        assert watch.page_errors == []
        assert watch.console_errors == []
        assert watch.foreign_requests == []
    finally:
        context.close()
