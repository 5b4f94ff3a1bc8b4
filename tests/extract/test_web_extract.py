"""web.extract against the local test site: main text without boilerplate, JSON-LD/OpenGraph, render mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import NodeError
from extract_site import ARTICLE_TEXT, BOILERPLATE, JS_TEXT, PRODUCT_NAME
from zoo import G


@pytest.fixture
def allow_private(monkeypatch):
    monkeypatch.setenv("FLOW_FETCH_ALLOW_PRIVATE", "true")


def extract(engine, url, **inputs):
    g = G().node("x", "web.extract", url=url, **inputs)
    for name in ("title", "text", "markdown", "metadata", "images", "links"):
        g.output(name, "x", name)
    return engine.run_sync(g.build(), {}).outputs


def test_web_extract_article_main_text_without_boilerplate(engine, site, allow_private):
    out = extract(engine, site.url("/article"))
    assert out["title"] == "The lighthouse keeper"
    assert ARTICLE_TEXT in out["text"] and "leather book" in out["text"]
    assert BOILERPLATE not in out["text"] and "Section 3" not in out["text"] and "Copyright" not in out["text"]
    assert out["markdown"].startswith("# The lighthouse keeper") and BOILERPLATE not in out["markdown"]
    meta = out["metadata"]
    assert meta["author"] == "Ada Writer" and meta["date"] == "2026-03-14" and meta["language"] == "en"
    assert meta["description"] == "A keeper's life" and meta["product"] is None
    assert out["images"] == [site.url("/images/lighthouse.png")]
    urls = [link["url"] for link in out["links"]]
    assert site.url("/section/0") in urls and "https://other.example/partner" in urls
    assert {"url": site.url("/about"), "text": "About us"} in out["links"]


def test_web_extract_product_json_ld_and_opengraph(engine, site, allow_private):
    out = extract(engine, site.url("/product"))
    product = out["metadata"]["product"]
    assert product["name"] == PRODUCT_NAME and product["price"] == "129.90" and product["currency"] == "EUR"
    assert product["brand"] == "Northpeak" and product["sku"] == "TB-40" and product["source"] == "json-ld"
    assert product["images"] == [site.url("/images/backpack-front.png"), "https://cdn.example/backpack-side.png"]
    assert out["metadata"]["opengraph"]["product:price:amount"] == "129.90"
    assert out["metadata"]["site"] == "Northpeak Shop"
    assert out["metadata"]["jsonld"][0]["@type"] == "Product"
    assert site.url("/images/backpack-og.png") == out["images"][0]  # og:image first, absolute
    assert "waterproof 40 litre backpack" in out["text"]


def test_web_extract_follows_redirects_and_reports_the_final_url(engine, site, allow_private):
    out = extract(engine, site.url("/redirect/3"))
    assert out["metadata"]["url"] == site.url("/article") and ARTICLE_TEXT in out["text"]


@pytest.mark.parametrize("path, kind, match", [
    ("/huge", "fetch_limit", "more than the limit of 1048576 bytes"),
    ("/file.bin", "fetch_limit", "'application/octet-stream', not one of text/html"),
    ("/redirect/9", "fetch_failed", "redirects more than 5 times"),
    ("/to-metadata", "fetch_refused", "169.254.169.254, a cloud metadata address"),
    ("/missing", "fetch_failed", "HTTP 404"),
])
def test_web_extract_limits_give_clear_errors(engine, site, allow_private, path, kind, match):
    with pytest.raises(NodeError, match=match) as caught:
        extract(engine, site.url(path), max_bytes=1 << 20)
    assert caught.value.cause.kind == kind and caught.value.status < 500 or kind == "fetch_failed"


def test_web_extract_refuses_loopback_by_default(engine, site, monkeypatch):
    monkeypatch.delenv("FLOW_FETCH_ALLOW_PRIVATE", raising=False)
    for url in (site.url("/article"), site.url("/article", host="localhost")):
        with pytest.raises(NodeError, match="FLOW_FETCH_ALLOW_PRIVATE=true") as caught:
            extract(engine, url)
        assert caught.value.status == 403


def test_web_extract_strict_privacy_does_not_block_extraction(site, registry, tmp_path, monkeypatch):
    """Fetching a page is not a model call: a strict server extracts, the fetch setting alone decides."""
    from engine import Engine, MemoryCache
    from engine.settings import Settings
    from nodes.llm import TextBackends

    monkeypatch.delenv("FLOW_FETCH_ALLOW_PRIVATE", raising=False)
    conf = Settings(privacy="strict", fetch_allow_private=True)
    eng = Engine(registry, cache=MemoryCache(1 << 20), output_dir=tmp_path / "o",
                 config={"text": TextBackends.from_settings(conf)})
    try:
        assert ARTICLE_TEXT in extract(eng, site.url("/article"))["text"]
    finally:
        eng.close()


# -- render: true, with Debian's chromium -----------------------------------------------------------

needs_browser = pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                                   reason="/usr/bin/chromium is absent: install Debian's chromium (`make test` does)")


@needs_browser
@pytest.mark.slow
def test_web_extract_render_gets_the_javascript_text(engine, site, allow_private):
    pytest.importorskip("playwright.sync_api")
    plain = extract(engine, site.url("/js"))
    assert JS_TEXT not in plain["text"]
    before = len(site.requests)
    rendered = extract(engine, site.url("/js"), render=True)
    assert JS_TEXT in rendered["text"] and rendered["title"] == "Built by script"
    assert site.requests[before:].count("/js") >= 2  # the guard's check, then the browser's load through it


@needs_browser
@pytest.mark.slow
def test_web_extract_render_routes_every_browser_request_through_the_guard(engine, site, monkeypatch):
    """A public page whose image, script and fetch() point at loopback: the guard refuses them, so the
    browser never reaches them (it opens no connection of its own)."""
    import socket

    from engine import fetch as guard

    pytest.importorskip("playwright.sync_api")
    monkeypatch.delenv("FLOW_FETCH_ALLOW_PRIVATE", raising=False)
    public = "93.184.216.34"
    monkeypatch.setattr(guard, "resolve", lambda host, port: [public] if host == "public.example" else ["127.0.0.1"])
    real = socket.create_connection
    monkeypatch.setattr(guard, "connect", lambda address, timeout=None, source=None:
                        real(("127.0.0.1", address[1]), timeout, source))
    inner = site.url("/images/secret.png")
    site.extra["/sneaky"] = (200, {"Content-Type": "text/html"}, (
        "<html><body><article><h1>Sneaky</h1><p>" + ARTICLE_TEXT + "</p>"
        f"<img src='{inner}'><img src='http://169.254.169.254/latest/meta-data/'>"
        f"<script src='{site.url('/secret.js')}'></script>"
        f"<script>fetch('{site.url('/secret-fetch')}').catch(()=>{{}});</script>"
        "<img src='/images/public.png'></article></body></html>").encode())
    before = len(site.requests)
    out = extract(engine, f"http://public.example:{site.port}/sneaky", render=True)
    assert ARTICLE_TEXT in out["text"]
    served = site.requests[before:]
    assert "/images/public.png" in served  # the page's own resources load, through the guard
    assert not {"/images/secret.png", "/secret.js", "/secret-fetch"} & set(served)


@needs_browser
@pytest.mark.slow
def test_web_extract_render_refuses_loopback_by_default(engine, site, monkeypatch):
    monkeypatch.delenv("FLOW_FETCH_ALLOW_PRIVATE", raising=False)
    with pytest.raises(NodeError, match="a loopback address"):
        extract(engine, site.url("/js"), render=True)


def test_web_extract_render_without_a_browser_is_a_clear_error(engine, site, allow_private, monkeypatch):
    import nodes.web

    monkeypatch.setattr(nodes.web, "BROWSERS", ("/nonexistent/chromium",))
    with pytest.raises(NodeError, match="needs a Chromium browser and none is installed") as caught:
        extract(engine, site.url("/js"), render=True)
    assert caught.value.status == 503


# -- POST /web/extract and `flow web extract` -----------------------------------------------------

def _post(gateway_factory, path, body, headers=None):
    import asyncio

    async def scenario():
        async with gateway_factory() as client:
            response = await client.post(path, json=body, headers=headers or {})
            return response.status, await response.json()

    return asyncio.run(scenario())


def test_web_extract_endpoint_over_http(llm_gateway, site):
    status, body = _post(llm_gateway, "/web/extract", {"url": site.url("/product")})
    assert status == 200, body
    assert body["outputs"]["metadata"]["product"]["price"] == "129.90"
    assert PRODUCT_NAME == body["outputs"]["title"]


def test_web_extract_endpoint_refusal_is_403_with_the_fix(llm_gateway, site):
    status, body = _post(llm_gateway, "/web/extract", {"url": "http://169.254.169.254/latest/meta-data/"})
    assert status == 403 and "cloud metadata" in json.dumps(body)
    status, body = _post(llm_gateway, "/web/extract", {"url": "ftp://example.com/x"})
    assert status == 400 and "only http:// and https://" in json.dumps(body)


def test_web_extract_endpoint_needs_the_token_beside_the_open_web_page(gateway, site):
    """GET /web/... (the page's files) is open; POST /web/extract is an API call and needs the token."""
    import asyncio

    async def scenario():
        async with gateway(api_token="s3cret") as client:
            refused = await client.post("/web/extract", json={"url": site.url("/article")})
            page = await client.get("/web/index.html")
            return refused.status, page.status

    refused, page = asyncio.run(scenario())
    assert refused == 401 and page in (200, 404)


def test_web_extract_cli_subcommand(site, tmp_path):
    import os
    import subprocess
    import sys

    flow = str(Path(sys.executable).with_name("flow"))
    env = {**os.environ, "FLOW_FETCH_ALLOW_PRIVATE": "true", "FLOW_OUTPUT_DIR": str(tmp_path / "out"),
           "FLOW_MODELS_DIR": str(tmp_path / "m"), "FLOW_JOBS_DB": str(tmp_path / "j.sqlite3")}
    done = subprocess.run([flow, "web", "extract", site.url("/article"), "--json"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ARTICLE_TEXT in json.loads(done.stdout)["outputs"]["text"]
    env["FLOW_FETCH_ALLOW_PRIVATE"] = "false"
    done = subprocess.run([flow, "web", "extract", site.url("/article")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "FLOW_FETCH_ALLOW_PRIVATE=true" in done.stderr


@needs_browser
@pytest.mark.slow
def test_web_extract_endpoint_renders_in_the_gateway(llm_gateway, site):
    pytest.importorskip("playwright.sync_api")
    status, body = _post(llm_gateway, "/web/extract", {"url": site.url("/js"), "render": True})
    assert status == 200, body
    assert JS_TEXT in body["outputs"]["text"]
