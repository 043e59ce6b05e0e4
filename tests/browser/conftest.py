"""Browser tests: Debian's Chromium driven by Playwright against a real server.

One server and one browser serve the whole package (one event loop, ``loop_scope
="package"``); every test opens its own browser contexts, and every page is checked for
console errors when the test ends. Screenshots of the main states go to
``tests/browser/screenshots/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .. import requires
from ..helpers import ReviewSession, RunningServer, run_server

try:
    from playwright import async_api as playwright_api
except ImportError:  # the dev extra brings it; without it these tests are not collected
    playwright_api = None
# Under CI they are, and fail (tests/requires.py).
collect_ignore_glob = [] if playwright_api is not None or requires.strict() else ["test_ui_*.py"]

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "proofroom" / "client" / "web" / "dist" / "review.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}

OpenPage = Callable[..., Awaitable[Any]]


@pytest.fixture(scope="package")
def bundle_built() -> None:
    if playwright_api is None:
        requires.missing("Playwright is not installed (pip install -e '.[dev]')")
    if not BUNDLE.exists():
        requires.missing("the browser bundle is not built: run scripts/build_web.py")
    if not Path(CHROMIUM).exists():
        requires.missing("Chromium is not installed (apt-get install chromium)")


@pytest_asyncio.fixture(loop_scope="package", scope="package")
async def web_server(
    tmp_path_factory: pytest.TempPathFactory, bundle_built: None
) -> AsyncIterator[RunningServer]:
    async with run_server(tmp_path_factory.mktemp("browser") / "data") as running:
        yield running


@pytest_asyncio.fixture(loop_scope="package", scope="package")
async def browser(bundle_built: None) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="package")
async def open_page(browser: Any, web_server: RunningServer) -> AsyncIterator[OpenPage]:
    """``await open_page(session, role, **context_options)``: a ready review page.

    It opens the room with the personal token of the person who joined ``role``'s link;
    ``join="Ana"`` opens the role link itself instead and joins through its name form.
    ``path`` opens another page (then nothing waits for it to be ready); ``refused``
    tolerates the browser's log of refused requests. At the end of the test, no page may
    have logged a console error or thrown.
    """
    contexts: list[Any] = []
    errors: list[str] = []

    async def open_(
        session: ReviewSession | None,
        role: str,
        *,
        path: str | None = None,
        refused: bool = False,
        join: str | None = None,
        **options: Any,
    ) -> Any:
        options.setdefault("viewport", DESKTOP)
        context = await browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = await context.new_page()

        def on_console(message: Any, role: str = role) -> None:
            # A page whose requests are meant to be refused logs them; nothing else.
            if refused and message.text.startswith("Failed to load resource"):
                return
            if message.type == "error":
                errors.append(f"[{role}] console: {message.text} at {message.location}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc, role=role: errors.append(f"[{role}] page error: {exc}"))
        if path is None:
            assert session is not None
            token = session.links[role] if join is not None else session.tokens[role]
            path = f"/s/{session.id}?token={token}"
        await page.goto(web_server.url + path)
        if join is not None:
            await page.get_by_label("Your name").fill(join)
            await page.get_by_role("button", name="Join").click()
        if session is not None and path.startswith("/s/"):
            await page.wait_for_selector("body[data-state=ready]", timeout=10_000)
        return page

    yield open_
    for context in contexts:
        await context.close()
    assert not errors, "\n".join(errors)
