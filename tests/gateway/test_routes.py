"""The one route table: the app serves it, the README shows it, endpoints cannot shadow it."""

from __future__ import annotations

import json
import re

from gateway_support import ROOT

from gateway.keys import ENGINE
from gateway.routes import ROUTES, active_routes, markdown_table, reserved_prefixes


def test_routes_readme_table_is_the_route_table():
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- routes:[^\n]*-->\n(.*?)\n<!-- /routes -->", readme, re.S)
    assert found, "README.md lost its route table markers"
    assert found.group(1) == markdown_table(), "run `python -m gateway.routes` and paste its table into README.md"


def test_routes_the_app_serves_exactly_the_table(gateway):
    async def scenario():
        async with gateway() as client:
            served = {(r.method, r.resource.canonical) for r in client.app.router.routes()
                      if r.method != "HEAD" and r.resource is not None}
            endpoints = {("POST", path) for path in ("/hello", "/test/slow", "/test/fail")}
            engine = client.app[ENGINE]
            assert engine.models is None  # so the model routes are left out, and only they
            table = {(r.method, r.spec_path) for r in active_routes(engine)}
            assert {r.needs for r in ROUTES} - {r.needs for r in active_routes(engine)} == {"models"}
            assert served == table | endpoints

    import asyncio

    asyncio.run(scenario())


def test_routes_an_endpoint_may_not_shadow_a_route(tmp_path, registry):
    from engine import Engine
    from engine.catalogue import Catalogue

    (tmp_path / "clash.json").write_text(json.dumps({
        "name": "clash", "endpoint": "/jobs/mine", "nodes": {"t": {"type": "text.join", "inputs": {"a": "x", "b": "y"}}},
        "outputs": {"text": {"from": "t", "output": "text"}}}))
    engine = Engine(registry)
    try:
        catalogue = Catalogue(engine, tmp_path, reserved=reserved_prefixes())
        assert catalogue.endpoints == {} and "reserved" in catalogue.problems["clash"][0]
    finally:
        engine.close()
    for route in ROUTES:
        head = "/" + route.path.split("/")[1]
        assert route.method != "POST" or head in reserved_prefixes()
    # method-aware: a path only GET routes use is free for a POST endpoint (POST /web/extract beside GET /web/...)
    assert "/web" not in reserved_prefixes() and "/files" not in reserved_prefixes()


def test_routes_get_routes_answer_head(gateway, settings):
    async def scenario():
        async with gateway() as client:
            settings.output_dir.mkdir(parents=True, exist_ok=True)
            (settings.output_dir / "a.txt").write_text("x")
            for path in ("/health", "/files/a.txt", "/nodes"):
                assert (await client.head(path)).status == 200, path

    import asyncio

    asyncio.run(scenario())
