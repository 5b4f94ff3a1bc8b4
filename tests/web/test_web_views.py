"""Endpoints, jobs, outputs, models and the API token in a real browser against a real gateway."""

from __future__ import annotations

import pytest

from web_helpers import TINY, no_horizontal_overflow, open_page, shot


def test_endpoint_form_runs_and_shows_its_result(page, server):
    open_page(page, server, "endpoints/hello")
    form = page.locator("form.endpoint-form")
    assert "POST /hello" in form.locator("h3").inner_text()
    name = page.get_by_label("name", exact=True)  # labelled fields, built from the /endpoints schema
    assert name.input_value() == "world"  # the default is filled in
    name.fill("web")
    page.get_by_label("punctuation").fill("?")
    page.get_by_label("punctuation").press("Enter")  # the keyboard submits the form
    result = form.locator('.result-body[data-state="finished"]')
    result.wait_for()
    assert result.locator('[data-output="text"] pre').inner_text() == "Hello, web?"
    assert result.locator('[data-output="file"] a.download').count() == 1  # the saved file, to download
    shot(page, "endpoints")

    page.locator("nav a", has_text="Outputs").click()
    card = page.locator("#output-grid .card", has_text="Hello, web?").first
    card.wait_for()
    assert card.get_by_role("button", name="Copy text").count() == 1
    shot(page, "outputs")


def test_endpoint_form_offers_the_schema_fields(page, server):
    open_page(page, server, "endpoints/image/gen")
    width = page.get_by_label("width")
    assert (width.get_attribute("type"), width.get_attribute("min"), width.get_attribute("max"),
            width.get_attribute("step"), width.input_value()) == ("number", "64", "2048", "8", "512")
    assert page.get_by_label("scheduler").evaluate("s => [...s.options].map(o => o.text)")[1:] == [
        "default", "euler", "euler_ancestral", "dpmpp_2m", "ddim"]
    model = page.get_by_label("model", exact=True)
    assert model.input_value() == ""  # the model picker starts on "(default)" (the server's default applies)
    options = model.evaluate("s => [...s.options].map(o => o.value)")
    assert any(o.endswith(TINY) for o in options)  # the local model is offered
    assert page.get_by_role("textbox", name="prompt", exact=True).get_attribute("required") is not None


def test_jobs_view_cancels_a_running_job(page, server, web_root):
    slow = {"nodes": {"gen": {"type": "image.generate", "inputs": {
        "prompt": "slow", "width": 512, "height": 512, "steps": 150, "seed": 2,
        "model": str(web_root / "models" / "local" / TINY)}}}}
    status, accepted = server.call("POST", "/jobs", {"workflow": slow})
    assert status == 202, accepted
    open_page(page, server, "jobs")
    row = page.locator(f'#job-table tr[data-job="{accepted["id"]}"]')
    row.and_(page.locator('[data-state="running"]')).wait_for(timeout=60_000)
    row.get_by_role("button", name="Cancel").click()
    row.and_(page.locator('[data-state="cancelled"]')).wait_for()
    row.get_by_role("button", name="Open job").click()
    detail = page.locator("#job-detail")
    detail.locator('.result-body[data-state="cancelled"]').wait_for()
    assert "cancelled" in detail.inner_text()
    detail.get_by_role("button", name="Open workflow in the graph editor").click()
    page.locator('.gnode[data-node="gen"]').wait_for()  # the job's workflow, in the editor
    page.locator("nav a", has_text="Jobs").click()
    page.locator(f'#job-table tr[data-job="{accepted["id"]}"]').wait_for()
    shot(page, "jobs")


def test_models_view_shows_a_loaded_model_and_unloads_it(page, server, web_root):
    ref = str(web_root / "models" / "local" / TINY)
    status, job = server.call("POST", "/jobs?wait=true", {"workflow": {"nodes": {"gen": {
        "type": "image.generate", "inputs": {"prompt": "x", "width": 64, "height": 64, "steps": 1, "model": ref}}}}})
    assert status == 200, job
    open_page(page, server, "models")
    loaded = page.locator(f'#loaded-table tr[data-ref="{ref}"]')
    loaded.wait_for()
    assert "device" in loaded.inner_text() or "cpu" in loaded.inner_text()
    meter = page.get_by_role("meter", name="GPU budget in use")
    assert int(meter.get_attribute("aria-valuenow")) > 0
    assert page.locator(f'#local-table tr[data-ref="{ref}"]').count() == 1
    shot(page, "models")
    loaded.get_by_role("button", name=f"Unload {ref}").click()
    page.locator("#loaded-models", has_text="No model is loaded").wait_for()


def test_page_asks_for_the_api_token_once(page, token_server):
    page.goto(token_server.url + "/")
    dialog = page.locator("#token-dialog[open]")
    dialog.wait_for()
    shot(page, "token")
    page.get_by_label("Token", exact=True).fill("wrong")
    page.get_by_label("Token", exact=True).press("Enter")
    page.locator("#token-error", has_text="refused").wait_for()
    page.get_by_label("Token", exact=True).fill("web-secret")
    page.get_by_role("button", name="Use token").click()
    page.wait_for_selector("body[data-ready]")
    page.locator('#endpoint-list a[data-endpoint="/hello"]').wait_for()
    page.locator('#conn[data-state="live"]').wait_for()  # the WebSocket works with the token too
    page.reload()
    page.wait_for_selector("body[data-ready]")
    assert page.locator("#token-dialog[open]").count() == 0  # asked once: kept in the browser
    page.locator('#endpoint-list a[data-endpoint="/hello"]').click()  # /chat sorts before it
    page.get_by_label("name", exact=True).fill("token")
    page.get_by_role("button", name="Run").click()
    result = page.locator('.result-body[data-state="finished"]')
    result.wait_for()
    assert "Hello, token!" in result.inner_text()


def test_page_is_readable_at_small_widths(page, server):
    page.set_viewport_size({"width": 380, "height": 800})
    for view in ("endpoints/hello", "graph", "jobs", "models", "outputs"):
        open_page(page, server, view)
        page.wait_for_timeout(200)
        assert no_horizontal_overflow(page), view
        if view == "graph":
            shot(page, "narrow-graph")
    open_page(page, server, "endpoints/image/gen")
    assert no_horizontal_overflow(page)
    shot(page, "narrow-endpoints")


@pytest.mark.slow  # over 3 s
def test_websocket_reconnects_after_the_gateway_restarts(fresh_server, page):  # the page closes first
    open_page(page, fresh_server, "jobs")
    page.locator('#conn[data-state="live"]').wait_for()
    fresh_server.kill()  # the gateway goes away (SIGKILL: no goodbye on the socket) and comes back
    fresh_server.log.close()
    page.locator('#conn[data-state="down"]').wait_for()
    fresh_server.start(timeout=60)
    page.locator('#conn[data-state="live"]').wait_for(timeout=30_000)
    status, _ = fresh_server.call("POST", "/hello", {"name": "again"})
    assert status == 200
    page.locator("#job-table tr", has_text="hello").first.wait_for()  # live updates flow again
