"""The page's controls come from the catalogue's hints, its links from the served rule; saved graphs carry versions."""

from __future__ import annotations

import json

from web_helpers import add_node, field, node, open_page, select_node


def test_inspector_controls_follow_the_widget_hints(page, server):
    open_page(page, server, "graph")
    add_node(page, "image.load", "load1")
    select_node(page, "load1")
    data = page.locator('#inspector [data-field="data"]')
    assert data.locator("textarea").count() == 1 and data.locator('input[type="file"]').count() == 1  # image
    path = page.locator('#inspector [data-field="path"] input').first
    assert path.get_attribute("placeholder") == "a path in the input folder"  # file
    add_node(page, "image.generate", "generate1")
    select_node(page, "generate1")
    tag = {name: field(page, name).evaluate("e => e.tagName") for name in ("prompt", "model", "negative_prompt", "width")}
    assert tag == {"prompt": "TEXTAREA", "model": "SELECT", "negative_prompt": "TEXTAREA", "width": "INPUT"}
    assert "other…" in field(page, "model").inner_text()  # the model picker, not a plain choice
    assert field(page, "seed").get_attribute("placeholder") == "random"  # seed


def test_editor_links_by_the_served_rule_and_saves_node_versions(page, server):
    open_page(page, server, "graph")
    add_node(page, "primitive.int", "int1")
    add_node(page, "json.get", "get1")
    add_node(page, "primitive.float", "float1")
    page.locator('.port.out[data-node="int1"][data-output="value"]').press("Enter")
    # an INT output fits the JSON and FLOAT inputs (the served `accepts`), not the TEXT path of json.get
    assert page.locator('.port.in.compatible[data-node="get1"][data-input="value"]').count() == 1
    assert page.locator('.port.in.incompatible[data-node="get1"][data-input="path"]').count() == 1
    assert page.locator('.port.in.compatible[data-node="float1"][data-input="value"]').count() == 1
    catalogue = server.call("GET", "/nodes")[1]
    draft = json.loads(page.evaluate("localStorage.getItem('flow.graph')"))
    versions = {nid: body.get("version") for nid, body in draft["doc"]["nodes"].items()}
    assert versions == {"int1": catalogue["primitive.int"]["version"], "get1": catalogue["json.get"]["version"],
                        "float1": catalogue["primitive.float"]["version"]}
    assert node(page, "get1").count() == 1
