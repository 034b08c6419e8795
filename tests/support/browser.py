"""Real-browser tests: Debian's Chromium driven by Playwright's sync API.

    from tests.support.browser import chromium_session

    def test_page(live_server):
        ...  # ORM work (seeding) first: see the note below
        with chromium_session(name="my-page") as browser:
            page = browser.page
            page.goto(live_server.url + "/some/page/")
            browser.screenshot("my-page")
            assert browser.errors == []

Each session launches its own browser with a fresh temporary profile; every
page opened through it records console errors (except Chromium's own
/favicon.ico request), uncaught page errors and dialogs (dismissed), and on an exception each open page is screenshotted
into the artifacts directory (``$TEST_ARTIFACTS_DIR``, else
``var/test-artifacts/``) before the browser closes.

Playwright's sync API runs an asyncio loop in the calling thread, so Django's
ORM raises ``SynchronousOnlyOperation`` inside the ``with`` block: do
database work before opening the browser (or after closing it). The live
server answers from its own thread and is not affected.

No browser is ever downloaded: ``/usr/bin/chromium`` (Debian's package) is
used, or ``$CHROMIUM_PATH``; a missing browser fails the test (`make test` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_VIEWPORT = {"width": 1280, "height": 900}
PHONE_VIEWPORT = {"width": 390, "height": 844}


def artifacts_dir() -> Path:
    """Where screenshots go; created on demand."""
    path = Path(os.environ.get("TEST_ARTIFACTS_DIR") or REPO_ROOT / "var" / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "page"


@dataclass
class BrowserSession:
    """One launched Chromium. ``page`` is the first page (its own context);
    ``new_page`` opens more, each in a fresh context (no shared cookies
    unless ``storage_state`` is passed)."""

    browser: Any
    name: str
    page: Any = None
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions, all pages
    dialogs: list[str] = field(default_factory=list)  # alert/confirm/prompt messages, dismissed
    pages: list[Any] = field(default_factory=list)

    def new_page(self, *, viewport: dict[str, int] | None = None, **context_options: Any) -> Any:
        context = self.browser.new_context(viewport=viewport or DEFAULT_VIEWPORT, **context_options)
        page = context.new_page()
        label = f"page {len(self.pages) + 1}"
        page.on("console", lambda message: self._console(label, message))
        page.on("pageerror", lambda error: self.errors.append(f"{label} pageerror: {error}"))
        page.on("dialog", self._dismiss_dialog)
        self.pages.append(page)
        return page

    def _console(self, label: str, message: Any) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        if urlsplit(url).path == "/favicon.ico":  # Chromium asks every site for one; not the page's doing
            return
        self.errors.append(f"{label} console: {message.text}" + (f" ({url})" if url else ""))

    def _dismiss_dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def screenshot(self, name: str, *, page: Any = None, full_page: bool = True) -> Path:
        path = artifacts_dir() / f"{_safe_name(name)}.png"
        (page or self.page).screenshot(path=str(path), full_page=full_page)
        return path


@contextmanager
def chromium_session(*, name: str = "browser", viewport: dict[str, int] | None = None, **context_options: Any) -> Iterator[BrowserSession]:
    """Launch Chromium, open a first page (``viewport``, extra Playwright
    ``new_context`` options such as ``reduced_motion="reduce"``), yield the
    session, and always close the browser."""
    from tests.support.guards import server_starting

    server_starting("Chromium")
    if not shutil.which(CHROMIUM_PATH) and not os.access(CHROMIUM_PATH, os.X_OK):
        pytest.fail(f"Chromium not found at {CHROMIUM_PATH}: install Debian's chromium package (make test does).")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="mynah-chromium-")
    try:
        with sync_playwright() as playwright:
            # launch() gives every browser a new temporary profile of its own;
            # XDG dirs point at ours so nothing lands in the user's home.
            env = {**os.environ, "HOME": profile, "XDG_CONFIG_HOME": profile, "XDG_CACHE_HOME": profile}
            browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS, env=env)
            session = BrowserSession(browser=browser, name=name)
            try:
                session.page = session.new_page(viewport=viewport, **context_options)
                yield session
            except BaseException:
                for index, page in enumerate(session.pages):
                    with suppress(Exception):
                        session.screenshot(f"{name}-failure-{index + 1}", page=page)
                raise
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
