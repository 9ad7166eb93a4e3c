"""Playwright driving Debian's Chromium against Django's live server (tests marked `browser`).

Chromium is /usr/bin/chromium (apt-get install chromium); Playwright never downloads a browser
here. A failing test leaves a screenshot in test-artifacts/.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def chromium():
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test body
    # are still synchronous and safe.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
        # While that loop runs, Django keeps this thread's connections apart from the ones it
        # had before (per async context): closed before the loop stops, or the ones the later
        # tests opened outlive the session and the test database cannot be dropped.
        connections.close_all()


def session_cookie_for(user, live_server_url):
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": session.session_key,
        "url": live_server_url,
    }


@pytest.fixture
def browse(chromium, live_server, request):
    """browse(user) -> a logged-in Playwright page on the live server."""
    contexts = []

    def open_page(user):
        context = chromium.new_context(
            base_url=live_server.url, viewport={"width": 1400, "height": 900}
        )
        context.add_cookies([session_cookie_for(user, live_server.url)])
        page = context.new_page()
        page.set_default_timeout(10_000)
        errors = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.console_errors = errors
        contexts.append((context, page))
        return page

    yield open_page
    failed = getattr(request.node, "report_call", None)
    for index, (context, page) in enumerate(contexts):
        if failed is not None and failed.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(
                path=str(ARTIFACTS / f"{request.node.name}-{index}.png"), full_page=True
            )
        context.close()
