"""Web page fixtures: a real `flow serve` with a tiny image model, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# Quiet, offline, deterministic: no network services, no first-run UI, no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

sys.path.insert(0, str(ROOT / "tests"))  # tests/tiny.py builds the tiny model
from web_helpers import TINY, shot  # noqa: E402
sys.path.insert(0, str(ROOT / "tests" / "gateway"))
from gateway_support import Served  # noqa: E402  (the real-server helper the gateway tests use)


@pytest.fixture(scope="session")
def web_root(tmp_path_factory) -> Path:
    """A data folder: the repository's saved workflows and a models folder holding the tiny SD pipeline."""
    from tiny import tiny_stable_diffusion

    root = tmp_path_factory.mktemp("web")
    shutil.copytree(ROOT / "workflows", root / "workflows")
    tiny_stable_diffusion(root / "models" / "local" / TINY)
    return root


def _serve(root: Path, name: str, **env) -> Served:
    folder = root / name
    folder.mkdir()
    server = Served(folder, {"FLOW_WORKFLOWS_DIR": str(root / "workflows"), "FLOW_MODELS_DIR": str(root / "models"),
                             "FLOW_PROBE_DEVICE": "false", **env})
    server.start(timeout=60)
    return server


@pytest.fixture(scope="session")
def server(web_root):
    """One gateway for the web tests (no token)."""
    served = _serve(web_root, "open")
    yield served
    served.stop()


@pytest.fixture(scope="session")
def token_server(web_root):
    """A gateway that needs the API token ``web-secret``."""
    served = _serve(web_root, "locked", FLOW_API_TOKEN="web-secret")
    yield served
    served.stop()


@pytest.fixture
def fresh_server(web_root, request):
    """A gateway of this test's own (it may stop and start it)."""
    served = _serve(web_root, f"own-{request.node.name}")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless chromium (Playwright gives it a fresh profile in a temporary folder).

    Module scope: Playwright's sync API keeps an event loop running in this thread while it is
    open, which would break later tests that call asyncio.run().
    """
    if not os.path.exists(CHROMIUM):  # `make test` installs it; anything else says why it skips
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium package (`make test` does)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the `test` extra")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A new page in its own context; console errors fail the test, a screenshot is kept on failure."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Answers such as 400 (a refused workflow) and 401 (the token) are handled by the page, and so
    # is a lost WebSocket (it reconnects); the browser still logs them, so those are not counted.
    expected = ("Failed to load resource", "WebSocket connection to")
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and not any(e in msg.text for e in expected) else None)
    yield page
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        shot(page, f"FAILED-{request.node.name}")
    context.close()
    assert not errors, f"the page logged errors: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
