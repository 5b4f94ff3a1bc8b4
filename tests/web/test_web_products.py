"""The Products view in a real browser: create with an image upload, describe (the product workflow on the
tiny model behind the fake Ollama, a product page on a local site), see and edit the result."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from web_helpers import open_page, shot

TESTS = Path(__file__).resolve().parents[1]
for folder in ("text", "extract"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))


@pytest.fixture(scope="module")
def fake_ollama(tmp_path_factory):
    from llm_fakes import OLLAMA_NAME, FakeOllama
    from llm_tiny import TINY, TinyGenerator, build_tiny_llm

    root = tmp_path_factory.mktemp("products-llm")
    build_tiny_llm(root / TINY)
    server = FakeOllama(TinyGenerator(root / TINY)).start()
    server.add(OLLAMA_NAME, size=2000, capabilities=("completion", "vision"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shop():
    from extract_site import Site

    site = Site()
    yield site
    site.close()


@pytest.fixture
def product_server(web_root, fake_ollama, tmp_path):
    from gateway_support import Served

    served = Served(tmp_path, {"FLOW_WORKFLOWS_DIR": str(web_root / "workflows"),
                               "FLOW_MODELS_DIR": str(web_root / "models"), "FLOW_PROBE_DEVICE": "false",
                               "FLOW_OLLAMA_URL": fake_ollama.url, "FLOW_FETCH_ALLOW_PRIVATE": "true"})
    served.start(timeout=60)
    yield served
    served.stop()


def test_web_products_create_describe_and_edit(page, product_server, shop, tmp_path):
    from extract_site import png_bytes

    picture = tmp_path / "backpack.png"
    picture.write_bytes(png_bytes((32, 24), (30, 120, 60)))
    open_page(page, product_server, "products")
    page.get_by_label("Name").fill("Trailblazer 40L")
    page.get_by_label("Images (PNG, JPEG or WebP; up to 8)").set_input_files(str(picture))
    page.get_by_label("Product pages (one URL per line)").fill(shop.url("/product"))
    page.get_by_role("button", name="Create").click()
    detail = page.locator("#product-detail")
    detail.locator("#product-title", has_text="Trailblazer 40L").wait_for()
    detail.locator(".product-images img").wait_for()
    assert detail.locator(".product-images img").evaluate("img => img.complete && img.naturalWidth") == 32
    assert page.locator("#product-list .product-link", has_text="Trailblazer 40L").count() == 1

    page.get_by_label("Tone").fill("playful")
    page.get_by_label("Model", exact=True).fill("ollama:tiny:latest")
    page.get_by_label("Vision model").fill("ollama:tiny:latest")
    page.get_by_role("button", name="Describe").click()
    page.locator("#describe-status", has_text="last run: finished").wait_for(timeout=60_000)
    title = page.get_by_label("Title")
    assert title.input_value()  # the workflow wrote a description
    assert page.locator("#desc-meta").inner_text().endswith("tone playful")
    shot(page, "products")

    title.fill("Trailblazer 40L, the weekend pack")
    page.get_by_role("button", name="Save description").click()
    page.locator("#save-status", has_text="Saved.").wait_for()
    product_id = page.locator("#product-list .product-link").first.get_attribute("data-id")
    status, stored = product_server.call("GET", f"/products/{product_id}")
    assert status == 200 and stored["description"]["title"] == "Trailblazer 40L, the weekend pack"
    assert stored["describe"]["state"] == "finished" and stored["describe"]["tone"] == "playful"

    open_page(page, product_server, f"products/{product_id}")  # a link to the product opens it
    assert page.get_by_label("Title").input_value() == "Trailblazer 40L, the weekend pack"


def test_web_products_errors_are_shown(page, product_server, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_bytes(b"this is not a picture")
    open_page(page, product_server, "products")
    page.get_by_label("Name").fill("Broken")
    page.get_by_label("Images (PNG, JPEG or WebP; up to 8)").set_input_files(str(not_image))
    page.get_by_role("button", name="Create").click()
    page.locator("#product-form-status .error", has_text="not a readable image").wait_for()
