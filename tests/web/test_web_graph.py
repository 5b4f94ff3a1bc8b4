"""The graph editor in a real browser: built by clicking and dragging, run, validated, cancelled, loaded."""

from __future__ import annotations

import json

import pytest

from web_helpers import TINY, add_node, connect, drag, field, node, open_page, select_node, shot


def tiny_ref(web_root) -> str:
    return str(web_root / "models" / "local" / TINY)


def build_generate_save(page, web_root, *, width=64, steps=2):
    """image.generate -> image.save, by clicking the palette and dragging a wire; inputs set in the inspector."""
    add_node(page, "image.generate", "generate1")
    save = add_node(page, "image.save", "save1")
    before = save.bounding_box()
    drag(page, save.locator(".gnode-head"), by=(120, 160))
    after = save.bounding_box()
    assert after["x"] > before["x"] + 60 and after["y"] > before["y"] + 60  # it moved with the pointer
    connect(page, "generate1", "images", "save1", "images")
    assert page.locator("#wires path.wire.type-IMAGE").count() == 1
    assert "generate1.images" in node(page, "save1").locator('li.row[data-input="images"]').inner_text()
    select_node(page, "generate1")
    field(page, "prompt").fill("a red cat")
    for name, value in (("width", width), ("height", width), ("steps", steps), ("seed", 7)):
        field(page, name).fill(str(value))
    field(page, "model").select_option(tiny_ref(web_root))


@pytest.mark.slow  # over 3 s
def test_graph_built_by_dragging_runs_and_shows_its_image(page, server, web_root):
    open_page(page, server, "graph")
    build_generate_save(page, web_root)
    page.locator("#graph-run").click()
    node(page, "generate1").and_(page.locator('[data-state="finished"]')).wait_for(timeout=60_000)
    node(page, "save1").and_(page.locator('[data-state="finished"]')).wait_for()
    result = page.locator('#graph-result .result-body[data-state="finished"]')
    image = result.locator("img").first
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [64, 64]
    assert "generate1" in result.locator(".kv").first.inner_text()  # the seed used is shown
    shot(page, "graph")

    # Run again: nothing changed, so the generator comes from the cache (the saver is volatile: it runs).
    page.locator("#graph-run").click()
    node(page, "generate1").and_(page.locator('[data-state="cached"]')).wait_for()
    page.locator('#graph-result .result-body[data-state="finished"]').wait_for()


def test_graph_loads_the_workflow_embedded_in_a_png(page, server, web_root):
    status, job = server.call("POST", "/jobs?wait=true", {"workflow": {"nodes": {
        "gen": {"type": "image.generate", "inputs": {"prompt": "a blue boat", "width": 64, "height": 64, "steps": 1,
                                                     "seed": 3, "model": tiny_ref(web_root)}},
        "save": {"type": "image.save", "inputs": {"images": {"from": "gen", "output": "images"}}}}}})
    assert status == 200, job
    png = job["outputs"]["save.path"]
    open_page(page, server, "graph")
    page.locator("#graph-load").set_input_files(png)
    page.locator("#graph-status", has_text="embedded").wait_for()
    generator = page.locator('.gnode[data-type="image.generate"]')
    assert generator.count() == 1
    assert "a blue boat" in generator.inner_text()
    assert page.locator('.gnode[data-type="image.save"]').count() == 1
    assert page.locator("#wires path.wire").count() == 1


def test_graph_validation_problems_appear_on_their_node_and_input(page, server):
    open_page(page, server, "graph")
    add_node(page, "image.generate", "generate1")
    add_node(page, "image.save", "save1")
    select_node(page, "generate1")
    field(page, "width").fill("500")  # not a multiple of 8; the prompt is left out
    page.locator("#graph-run").click()
    page.locator("#graph-status", has_text="problem").wait_for()
    width = node(page, "generate1").locator('li.row.has-problem[data-input="width"]')
    assert "multiple of 8" in width.inner_text()
    assert node(page, "generate1").locator('li.row.has-problem[data-input="prompt"]').count() == 1
    assert node(page, "save1").locator('li.row.has-problem[data-input="images"]').count() == 1
    assert node(page, "save1").locator('li.row.has-problem[data-input="prefix"]').count() == 0
    # The inspector shows the same problem on the field.
    assert "multiple of 8" in page.locator('#inspector [data-field="width"] .error').inner_text()
    assert field(page, "width").get_attribute("aria-invalid") == "true"
    shot(page, "graph-problems")


def test_graph_cancelled_run_shows_as_cancelled(page, server, web_root, tmp_path):
    # A slow run (big image, many steps) loaded from a JSON file, then cancelled from the toolbar.
    doc = {"name": "slow", "nodes": {"gen": {"type": "image.generate", "inputs": {
        "prompt": "slow", "width": 512, "height": 512, "steps": 150, "seed": 1, "model": tiny_ref(web_root)}}}}
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(doc))
    open_page(page, server, "graph")
    page.locator("#graph-load").set_input_files(str(path))
    node(page, "gen").wait_for()
    page.locator("#graph-run").click()
    node(page, "gen").and_(page.locator('[data-state="running"]')).wait_for(timeout=60_000)
    node(page, "gen").locator("progress").wait_for()  # per-node progress from node.progress events
    page.locator("#graph-cancel").click()
    page.locator('#graph-result .result-body[data-state="cancelled"]').wait_for()
    assert node(page, "gen").get_attribute("data-state") == "cancelled"
    page.locator("nav a", has_text="Jobs").click()
    page.locator('#job-table tr[data-state="cancelled"]').first.wait_for()


def test_graph_is_usable_by_keyboard(page, server):
    open_page(page, server, "graph")
    search = page.get_by_label("Add node")
    for type_id in ("primitive.text", "text.join"):
        search.fill(type_id)
        search.press("Enter")
    node(page, "text1").wait_for()
    node(page, "join1").wait_for()
    # Enter on an output port, then on an input port, links them.
    page.locator('.port.out[data-node="text1"][data-output="value"]').press("Enter")
    assert page.locator('.port.in.compatible[data-node="join1"]').count() == 3  # every TEXT input lights up
    page.locator('.port.in[data-node="join1"][data-input="a"]').press("Enter")
    assert "text1.value" in node(page, "join1").locator('li.row[data-input="a"]').inner_text()
    # Arrow keys move a focused node; Enter opens its inputs in the inspector.
    box = node(page, "text1")
    x = box.bounding_box()["x"]
    box.focus()
    box.press("Shift+ArrowRight")
    assert box.bounding_box()["x"] >= x + 40
    box.press("Enter")
    page.keyboard.type("hi")
    assert field(page, "value").input_value() == "hi"
    assert "hi" in node(page, "text1").locator('li.row[data-input="value"]').inner_text()
    # Delete removes the focused node and its links.
    node(page, "join1").focus()
    page.keyboard.press("Delete")
    assert node(page, "join1").count() == 0
    assert page.locator("#wires path.wire").count() == 0
