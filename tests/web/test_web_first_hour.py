"""The first hour on the web page: failed pulls, progress numbers, the jobs list, zoom and pan, images, badges."""

from __future__ import annotations

import json
import re

import pytest

from web_helpers import TINY, add_node, connect, drag, node, open_page, shot


def tiny_ref(web_root) -> str:
    return str(web_root / "models" / "local" / TINY)


def test_failed_pull_shows_a_red_bar_with_the_error(page, server):
    open_page(page, server, "models")
    page.get_by_label("Model reference").fill("hf:flow-tests/no-such-model")
    page.get_by_role("button", name="Pull", exact=True).click()
    bar = page.locator('#pulls .pull[data-ref="hf:flow-tests/no-such-model"] .progress')
    bar.and_(page.locator('[data-state="failed"]')).wait_for(timeout=60_000)
    label = bar.locator(".progress-text").inner_text()
    assert label.startswith("failed: ") and "no-such-model" in label  # the error message, not just "failed"
    assert bar.locator(".progress-text").get_attribute("role") == "alert"
    colour = bar.locator("progress").evaluate("p => getComputedStyle(p).accentColor")
    red, green, blue = (int(c) for c in re.findall(r"\d+", colour)[:3])
    assert red > 150 and green < 100 and blue < 100, colour  # red, not the accent blue
    shot(page, "first-hour-failed-pull")


def test_progress_label_has_the_numbers(page, server, web_root, tmp_path):
    open_page(page, server, "graph")
    # The words of one node.progress event (as an LLM's tokens would give them).
    text = page.evaluate("""async () => {
        const { stepText } = await import('/web/js/watch.js');
        return [stepText({ node: 'gen', done: 12, total: 64, message: 'tokens' }),
                stepText({ node: 'gen', done: 12, total: null, message: 'tokens' })];
    }""")
    assert text == ["gen: 12/64 tokens (19%)", "gen: 12 tokens"]
    # And live: a slow image run shows its denoising steps as numbers, in the graph and in the Jobs view.
    doc = {"name": "slow", "nodes": {"gen": {"type": "image.generate", "inputs": {
        "prompt": "slow numbers", "width": 512, "height": 512, "steps": 150, "seed": 1, "model": tiny_ref(web_root)}}}}
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(doc))
    page.locator("#graph-load").set_input_files(str(path))
    node(page, "gen").wait_for()
    page.locator("#graph-run").click()
    label = page.locator("#graph-status .progress-text")
    label.filter(has_text=re.compile(r"gen: \d+/150 denoising \(\d+%\)")).wait_for(timeout=60_000)
    assert re.search(r"0/1 nodes · gen: \d+/150 denoising \(\d+%\)", label.inner_text())
    shot(page, "first-hour-progress-graph")
    page.locator("nav a", has_text="Jobs").click()
    cell = page.locator('#job-table tr[data-state="running"] .progress-cell').first
    cell.filter(has_text=re.compile(r"gen: \d+/150 denoising")).wait_for(timeout=20_000)
    shot(page, "first-hour-progress-jobs")
    page.locator('#job-table tr[data-state="running"]').first.get_by_role("button", name="Cancel").click()
    page.locator('#job-table tr[data-state="running"]').first.wait_for(state="detached", timeout=30_000)


def test_jobs_list_shows_prompt_and_id_and_acts_on_ended_jobs(page, server):
    status, hello = server.call("POST", "/hello?wait=true", {"name": "first hour"})
    assert status == 200, hello
    status, plain = server.call("POST", "/jobs?wait=true", {"workflow": {"name": "plain", "nodes": {
        "t": {"type": "primitive.text", "inputs": {"value": "plain text"}}}}})
    assert status == 200, plain
    open_page(page, server, "jobs")
    row = page.locator(f'#job-table tr[data-job="{hello["id"]}"]')
    row.wait_for()
    text = row.locator(".job-name").inner_text()
    assert "hello" in text and "/hello" in text and hello["id"][:8] in text
    assert row.locator(".job-prompt").inner_text() == "first hour"  # the first text param
    shot(page, "first-hour-jobs")

    # Re-run: the same params to the same endpoint; the new job opens below.
    row.get_by_role("button", name="Re-run").click()
    detail = page.locator("#job-detail")
    result = detail.locator('.result-body[data-state="finished"]')
    result.wait_for(timeout=20_000)
    assert result.get_attribute("data-job") != hello["id"]
    assert result.locator('[data-output="text"] pre').inner_text() == "Hello, first hour!"

    # Re-run a graph job: the same workflow to /jobs.
    other = page.locator(f'#job-table tr[data-job="{plain["id"]}"]')
    other.get_by_role("button", name="Re-run").click()
    again = detail.locator('.result-body[data-state="finished"]', has_text="plain text")
    again.wait_for(timeout=20_000)
    assert again.get_attribute("data-job") not in (plain["id"], hello["id"])
    assert "plain" in detail.locator("h3").inner_text()

    # Hide (the gateway keeps ended jobs: hidden in this browser only), then show again.
    page.locator(f'#job-table tr[data-job="{hello["id"]}"]').get_by_role("button", name="Hide").click()
    page.locator(f'#job-table tr[data-job="{hello["id"]}"]').wait_for(state="detached")
    page.locator("#jobs-unhide").click()
    page.locator(f'#job-table tr[data-job="{hello["id"]}"]').wait_for()

    # Open in the graph editor.
    page.locator(f'#job-table tr[data-job="{hello["id"]}"]').get_by_role("button", name="Edit").click()
    node(page, "greeting").wait_for()
    assert page.locator("#view-graph").is_visible()
    # promptOf prefers `prompt`, and shortens long ones.
    assert page.evaluate("""async () => {
        const { promptOf } = await import('/web/js/jobs.js');
        return [promptOf({ seed: 1, prompt: 'a red cat' }), promptOf({ n: 2, style: 'oil' }), promptOf({}), promptOf({ prompt: 'x'.repeat(80) }).length];
    }""") == ["a red cat", "oil", "", 60]


def test_graph_zooms_pans_and_fits(page, server):
    open_page(page, server, "graph")
    page.locator("#graph-new").click()
    text = add_node(page, "primitive.text", "text1")
    join = add_node(page, "text.join", "join1")
    canvas = page.locator("#canvas")
    cbox = canvas.bounding_box()
    width = join.bounding_box()["width"]

    # Ctrl+wheel zooms out around the pointer; nodes get smaller.
    page.mouse.move(cbox["x"] + 100, cbox["y"] + 100)
    page.keyboard.down("Control")
    page.mouse.wheel(0, 200)
    page.keyboard.up("Control")
    page.wait_for_function("Number(document.getElementById('canvas').dataset.zoom) < 0.9")
    assert join.bounding_box()["width"] < width * 0.9
    assert page.locator("#graph-zoom").inner_text() != "100%"

    # Dragging the empty background pans: every node moves with the pointer.
    before = text.bounding_box()
    page.mouse.move(cbox["x"] + cbox["width"] - 40, cbox["y"] + cbox["height"] - 40)
    page.mouse.down()
    page.mouse.move(cbox["x"] + cbox["width"] - 140, cbox["y"] + cbox["height"] - 100, steps=6)
    page.mouse.up()
    after = text.bounding_box()
    assert abs(after["x"] - (before["x"] - 100)) < 2 and abs(after["y"] - (before["y"] - 60)) < 2

    # Linking by dragging and moving a node still follow the pointer at this zoom.
    connect(page, "text1", "value", "join1", "a")
    assert "text1.value" in join.locator('li.row[data-input="a"]').inner_text()
    assert page.locator("#wires path.wire").count() == 1
    start = join.bounding_box()
    drag(page, join.locator(".gnode-head"), by=(80, 40))
    moved = join.bounding_box()
    assert abs(moved["x"] - start["x"] - 80) < 3 and abs(moved["y"] - start["y"] - 40) < 3

    # Keys on the canvas: + zooms in; Fit shows every node inside the canvas.
    zoom = float(canvas.get_attribute("data-zoom"))
    canvas.focus()
    page.keyboard.press("+")
    assert float(canvas.get_attribute("data-zoom")) > zoom
    page.mouse.wheel(0, 900)  # the wheel alone pans (far away)
    page.locator("#graph-fit").click()
    cbox = canvas.bounding_box()
    for box in (text.bounding_box(), join.bounding_box()):
        assert cbox["x"] <= box["x"] and box["x"] + box["width"] <= cbox["x"] + cbox["width"]
        assert cbox["y"] <= box["y"] and box["y"] + box["height"] <= cbox["y"] + cbox["height"]
    # The wire follows its ports after the fit.
    wire = page.locator("#wires path.wire").bounding_box()
    port = page.locator('.port.in[data-node="join1"][data-input="a"]').bounding_box()
    out = page.locator('.port.out[data-node="text1"][data-output="value"]').bounding_box()
    middle = (port["x"] + port["width"] / 2 + out["x"] + out["width"] / 2) / 2
    assert abs(wire["x"] + wire["width"] / 2 - middle) < 2  # (the box of a path counts its stroke too)
    shot(page, "first-hour-graph-zoom")


def test_rerun_of_a_loaded_png_shows_the_image(page, server, web_root):
    status, job = server.call("POST", "/jobs?wait=true", {"workflow": {"nodes": {
        "gen": {"type": "image.generate", "inputs": {"prompt": "a green kite", "width": 64, "height": 64, "steps": 1,
                                                     "seed": 5, "model": tiny_ref(web_root)}},
        "save": {"type": "image.save", "inputs": {"images": {"from": "gen", "output": "images"}}}}}})
    assert status == 200, job
    open_page(page, server, "graph")
    page.locator("#graph-load").set_input_files(job["outputs"]["save.path"])
    page.locator("#graph-status", has_text="embedded").wait_for()
    page.locator("#graph-run").click()
    result = page.locator('#graph-result .result-body[data-state="finished"]')
    result.wait_for(timeout=60_000)
    # The embedded workflow's output is a list of saved paths (no URLs): shown as the picture.
    image = result.locator('[data-output="files"] img').first
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [64, 64]
    assert result.locator('[data-output="files"] pre').count() == 0  # not the raw path
    shot(page, "first-hour-png-rerun")


def test_hello_name_is_a_text_field(page, server):
    open_page(page, server, "endpoints/hello")
    name = page.locator('form.endpoint-form [data-field="name"]')
    assert name.locator(".type-tag").inner_text() == "TEXT"
    assert name.locator("input").get_attribute("type") == "text"
    assert page.locator('form.endpoint-form [data-field="punctuation"] .type-tag').inner_text() == "TEXT"
    name.locator("input").fill("42")  # text stays text: not the number 42
    page.get_by_label("punctuation").press("Enter")
    result = page.locator('form.endpoint-form .result-body[data-state="finished"]')
    result.wait_for()
    assert result.locator('[data-output="text"] pre').inner_text() == "Hello, 42!"
    shot(page, "first-hour-hello-text")


def test_a_failed_job_stops_its_bar_where_it_was(page, server):
    # job.failed after one of two nodes: the bar stays at half, marked failed with the message.
    open_page(page, server, "endpoints/hello")
    page.evaluate("""async () => {
        const { jobProgress } = await import('/web/js/watch.js');
        const p = jobProgress('probe');
        p.element.id = 'probe-bar';
        document.body.append(p.element);
        p.update({ event: 'job.started', to_run: 2 });
        p.update({ event: 'node.started', node: 'a' });
        p.update({ event: 'node.finished', node: 'a' });
        p.update({ event: 'node.started', node: 'b' });
        p.update({ event: 'node.failed', node: 'b' });
        p.update({ event: 'job.failed', message: 'b broke' });
    }""")
    bar = page.locator("#probe-bar")
    assert bar.get_attribute("data-state") == "failed"
    assert bar.locator(".progress-text").inner_text() == "failed: b broke"
    assert bar.locator("progress").evaluate("p => p.value") == pytest.approx(0.5)  # not a full bar
