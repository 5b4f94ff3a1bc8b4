"""Products CRUD over HTTP (JSON and multipart uploads, limits, bad ids), stored in the job database,
and POST /products/{id}/describe saving the product workflow's result into the record."""

from __future__ import annotations

import asyncio
import sqlite3

import aiohttp
import pytest

from extract_support import MODEL
from extract_site import png_bytes


def run(factory, steps, **settings):
    async def scenario():
        async with factory(**settings) as client:
            return await steps(client)

    return asyncio.run(scenario())


def _form(name="Backpack", files=(), **fields):
    form = aiohttp.FormData()
    form.add_field("name", name)
    for key, value in fields.items():
        form.add_field(key, value)
    for i, data in enumerate(files):
        form.add_field("images", data, filename=f"p{i}.png", content_type="image/png")
    return form


def test_products_crud_json_and_multipart(gateway, tmp_path):
    async def steps(client):
        made = await client.post("/products", json={"name": "Mug", "source_urls": ["https://shop.example/mug"],
                                                    "facts": {"colour": "blue"}, "notes": "dishwasher safe"})
        mug = await made.json()
        assert made.status == 201, mug
        uploaded = await client.post("/products", data=_form(files=[png_bytes(), png_bytes((8, 8))],
                                                             source_urls="https://a.example/x\nhttps://b.example/y",
                                                             facts='{"size": "40L"}'))
        bag = await uploaded.json()
        assert uploaded.status == 201, bag
        assert len(bag["images"]) == 2 and bag["source_urls"] == ["https://a.example/x", "https://b.example/y"]
        assert bag["facts"] == {"size": "40L"}
        image = await client.get("/files/" + bag["images"][0]["path"])
        assert image.status == 200 and (await image.read()).startswith(b"\x89PNG")
        listed = await (await client.get("/products")).json()
        assert [p["id"] for p in listed["products"]] == [bag["id"], mug["id"]]  # newest first
        page = await (await client.get("/products?limit=1")).json()
        assert len(page["products"]) == 1 and "before=" in page["next"]
        second = await (await client.get(page["next"])).json()
        assert [p["id"] for p in second["products"]] == [mug["id"]] and "next" not in second
        description = {"title": "Blue mug", "short": "A mug.", "long": "A blue mug.", "features": ["blue"],
                       "attributes": {"colour": "blue"}, "language": "en", "tone": "neutral"}
        patched = await client.patch(f"/products/{mug['id']}", json={"name": "Big mug", "description": description})
        patched_body = await patched.json()
        assert patched.status == 200 and patched_body["name"] == "Big mug"
        assert patched_body["description"] == description and patched_body["updated"] >= mug["updated"]
        kept = await client.patch(f"/products/{bag['id']}", json={"images": [bag["images"][1],
                                                                              {"url": "https://c.example/i.png"}]})
        assert (await kept.json())["images"] == [bag["images"][1], {"url": "https://c.example/i.png"}]
        assert (await client.get("/files/" + bag["images"][0]["path"])).status == 404  # dropped upload is deleted
        foreign = await client.patch(f"/products/{bag['id']}", json={"images": [{"path": "../../etc/passwd"}]})
        assert foreign.status == 400 and "not one of its files" in (await foreign.json())["error"]["message"]
        got = await (await client.get(f"/products/{mug['id']}")).json()
        assert got["name"] == "Big mug" and got["facts"] == {"colour": "blue"}
        deleted = await client.delete(f"/products/{bag['id']}")
        assert deleted.status == 200 and (await client.get(f"/products/{bag['id']}")).status == 404
        assert (await client.get("/files/" + bag["images"][1]["path"])).status == 404
        return mug["id"]

    mug_id = run(gateway, steps)
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:  # the job database, its own table
        assert db.execute("SELECT name FROM products WHERE id=?", (mug_id,)).fetchone() == ("Big mug",)


@pytest.mark.parametrize("product_id", ["nope", "0" * 32, "../../etc", "A" * 32, "x" * 500])
def test_products_bad_ids_are_404(gateway, product_id):
    async def steps(client):
        answers = [await client.get(f"/products/{product_id}"),
                   await client.patch(f"/products/{product_id}", json={"name": "x"}),
                   await client.delete(f"/products/{product_id}"),
                   await client.post(f"/products/{product_id}/describe", json={})]
        return [(a.status, await a.json()) for a in answers]

    for status, body in run(gateway, steps):
        assert status == 404 and body["error"]["type"] == "not_found", body


@pytest.mark.parametrize("body, match", [
    ({}, "'name' must be a non-empty text"), ({"name": " "}, "'name' must be a non-empty text"),
    ({"name": "x", "colour": "red"}, "unknown field 'colour'"),
    ({"name": "x", "source_urls": ["ftp://a/b"]}, "not an http(s) URL"),
    ({"name": "x", "source_urls": ["https://a.example/"] * 9}, "at most 8"),
    ({"name": "x", "images": [{"url": "javascript:alert(1)"}]}, "not an http(s) URL"),
    ({"name": "x", "images": [{"path": "../../etc/passwd"}]}, "a path names an image a product already has"),
    ({"name": "x", "facts": [1, 2]}, "'facts' must be a JSON object"),
    ({"name": "x", "description": {"title": 5}}, "does not fit its schema at title"),
    ({"name": "x" * 301}, "at most 300 characters"),
])
def test_products_validation_errors(gateway, body, match):
    async def steps(client):
        made = await client.post("/products", json=body)
        return made.status, await made.json()

    status, answer = run(gateway, steps)
    assert status == 400 and match in answer["error"]["message"], answer


def test_products_upload_limits(gateway, monkeypatch):
    import engine.products as engine_products
    import gateway.products as gateway_products

    monkeypatch.setattr(engine_products, "MAX_IMAGE_BYTES", 2000)
    monkeypatch.setattr(gateway_products, "MAX_IMAGE_BYTES", 2000)
    big = png_bytes((400, 400)) + b"\0" * 3000

    async def steps(client):
        too_large = await client.post("/products", data=_form(files=[big]))
        not_image = aiohttp.FormData()
        not_image.add_field("name", "x")
        not_image.add_field("images", b"%PDF-1.4 not an image", filename="a.pdf", content_type="application/pdf")
        wrong = await client.post("/products", data=not_image)
        many = await client.post("/products", data=_form(files=[png_bytes()] * 9))
        plain = await client.post("/products", data=b"name=x", headers={"Content-Type": "text/plain"})
        return [(r.status, await r.json()) for r in (too_large, wrong, many, plain)]

    (s1, b1), (s2, b2), (s3, b3), (s4, _) = run(gateway, steps)
    assert s1 == 413 and "more than the limit of 2000 bytes" in b1["error"]["message"]
    assert s2 == 400 and "not a readable image" in b2["error"]["message"]
    assert s3 == 400 and "at most 8 images" in b3["error"]["message"]
    assert s4 == 415


def test_products_describe_saves_the_result(llm_gateway, site):
    async def steps(client):
        form = _form(name="Trailblazer 40L", files=[png_bytes((24, 16))], source_urls=site.url("/product"))
        product = await (await client.post("/products", data=form)).json()
        described = await client.post(f"/products/{product['id']}/describe",
                                      json={"tone": "playful", "model": MODEL, "vision_model": MODEL, "seed": 5})
        body = await described.json()
        assert described.status == 200, body
        job = await (await client.get(f"/jobs/{body['job']['id']}")).json()
        stored = await (await client.get(f"/products/{product['id']}")).json()
        bad = await client.post(f"/products/{product['id']}/describe", json={"colour": "red"})
        return body, job, stored, bad.status

    body, job, stored, bad = asyncio.run(_with(llm_gateway, steps))
    assert stored["description"] == body["product"]["description"] == job["outputs"]["description"]
    assert set(stored["description"]) == {"title", "short", "long", "features", "attributes", "language", "tone"}
    assert stored["describe"]["state"] == "finished" and stored["describe"]["job"] == job["id"]
    assert stored["describe"]["tone"] == "playful"
    assert "waterproof 40 litre backpack" in job["outputs"]["page_text"]  # the intermediate results are in the job
    assert isinstance(job["outputs"]["seen"], str) and job["outputs"]["seen"]
    assert bad == 400


async def _with(factory, steps):
    async with factory() as client:
        return await steps(client)
