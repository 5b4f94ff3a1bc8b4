"""GET /nodes serves what the web page builds forms and checks links with: widget hints and the link rule."""

from __future__ import annotations

from gateway_support import run


def test_nodes_catalogue_serves_widget_hints_and_accepted_link_types(gateway):
    async def scenario():
        async with gateway() as client:
            response = await client.get("/nodes")
            catalogue = await response.json()
            assert response.status == 200
            generate = catalogue["image.generate"]
            assert generate["version"] >= 1 and generate["inputs"]["model"]["widget"] == "model"
            assert generate["inputs"]["prompt"]["widget"] == "multiline"
            assert "widget" not in generate["inputs"]["width"]
            assert generate["inputs"]["width"]["accepts"] == ["INT"]
            assert catalogue["zoo.sleep"]["inputs"]["seconds"]["accepts"] == ["FLOAT", "INT"]
            assert set(catalogue["json.get"]["inputs"]["value"]["accepts"]) == {"JSON", "TEXT", "INT", "FLOAT", "BOOL"}
            assert catalogue["text.template"]["variadic"]["accepts"][0] == "JSON"

    run(scenario())
