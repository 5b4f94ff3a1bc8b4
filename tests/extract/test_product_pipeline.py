"""POST /product/describe end to end on the tiny model and the local site; another tone re-runs only the last node."""

from __future__ import annotations

import asyncio
import base64

from jsonschema import Draft202012Validator

from extract_support import MODEL
from extract_site import PRODUCT_DESCRIPTION, png_bytes

IMAGE = base64.b64encode(png_bytes((24, 16), (20, 90, 40))).decode()


def test_product_pipeline_end_to_end_and_rerun_with_another_tone(llm_gateway, site, ollama):
    from nodes.llm.media import PRODUCT_SCHEMA

    request = {"name": "Trailblazer 40L", "image": IMAGE, "url": site.url("/product"), "tone": "friendly",
               "language": "en", "model": MODEL, "vision_model": MODEL, "seed": 3}

    first_chats = []

    async def scenario():
        async with llm_gateway() as client:
            first = await client.post("/product/describe", json=request)
            first_body = await first.json()
            assert first.status == 200, first_body
            job = await (await client.get(f"/jobs/{first_body['id']}")).json()
            page_hits = site.requests.count("/product")
            first_chats.extend(body for path, body in ollama.requests if path == "/api/chat")
            second = await client.post("/product/describe", json={**request, "tone": "technical"})
            second_body = await second.json()
            assert second.status == 200, second_body
            return first_body, job, page_hits, second_body

    first, job, page_hits, second = asyncio.run(scenario())
    outputs = first["outputs"]
    description = outputs["description"]
    Draft202012Validator(PRODUCT_SCHEMA).validate(description)
    # every intermediate result is visible: what the vision model saw, the page's text and product data
    assert isinstance(outputs["seen"], str) and outputs["seen"]
    assert PRODUCT_DESCRIPTION in outputs["page_text"]
    assert outputs["page_product"]["product"]["price"] == "129.90"
    assert job["outputs"] == outputs
    # the writer got all of it
    chats = first_chats
    writer = chats[-1]["messages"]
    assert "129.90" in writer[0]["content"] and "friendly" in writer[-1]["content"]
    assert chats[-1]["format"] == PRODUCT_SCHEMA
    # another tone: only the writer runs again; the image description and the page come from the cache
    assert sorted(first["executed"]) == ["look", "page", "picture", "write"], first
    # (the picture is not even looked up: a cached node needs none of its ancestors)
    assert second["executed"] == ["write"] and sorted(second["cached"]) == ["look", "page"], second
    assert site.requests.count("/product") == page_hits  # the page was not fetched again
    assert "technical" in [b for p, b in ollama.requests if p == "/api/chat"][-1]["messages"][-1]["content"]


def test_product_pipeline_page_only_and_image_only(llm_gateway, site):
    async def scenario():
        async with llm_gateway() as client:
            page_only = await client.post("/product/describe", json={"url": site.url("/product"), "model": MODEL})
            image_only = await client.post("/product/describe", json={"image": IMAGE, "model": MODEL,
                                                                       "vision_model": MODEL})
            nothing = await client.post("/product/describe", json={"model": MODEL})
            return [(r.status, await r.json()) for r in (page_only, image_only, nothing)]

    (s1, b1), (s2, b2), (s3, b3) = asyncio.run(scenario())
    assert s1 == 200 and b1["outputs"]["seen"] == "", b1
    assert s2 == 200 and b2["outputs"]["page_text"] == "", b2
    assert s3 == 422 and "nothing is known about the product" in str(b3)
