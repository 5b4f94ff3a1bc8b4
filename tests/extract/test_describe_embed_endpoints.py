"""POST /image/describe (caption, detailed, ocr, a JSON Schema) and POST /text/embed, on the tiny model."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from extract_support import MODEL
from extract_site import png_bytes

IMAGE = base64.b64encode(png_bytes((20, 14))).decode()


def _post(factory, path, body):
    async def scenario():
        async with factory() as client:
            response = await client.post(path, json=body)
            return response.status, await response.json()

    return asyncio.run(scenario())


@pytest.mark.parametrize("task, expected", [("caption", "captions this image"), ("detailed", "in detail"),
                                            ("ocr", "Transcribe all text")])
def test_describe_endpoint_named_tasks(llm_gateway, ollama, task, expected):
    status, body = _post(llm_gateway, "/image/describe", {"image": IMAGE, "task": task, "model": MODEL,
                                                          "max_tokens": 6, "seed": 1})
    assert status == 200, body
    assert isinstance(body["outputs"]["text"], str) and body["outputs"]["data"] is None
    sent = ollama.requests[-1][1]["messages"][-1]
    assert expected in sent["content"] and len(sent["images"]) == 1


def test_describe_endpoint_json_schema_task(llm_gateway, ollama):
    schema = {"type": "object", "required": ["colour", "count"],
              "properties": {"colour": {"type": "string"}, "count": {"type": "integer", "minimum": 0, "maximum": 9}}}
    status, body = _post(llm_gateway, "/image/describe", {"image": IMAGE, "task": schema, "model": MODEL, "seed": 2})
    assert status == 200, body
    data = body["outputs"]["data"]
    assert set(data) == {"colour", "count"} and 0 <= data["count"] <= 9
    assert json.loads(body["outputs"]["text"]) == data
    assert ollama.requests[-1][1]["format"] == schema


def test_describe_endpoint_image_from_a_url(llm_gateway, site):
    status, body = _post(llm_gateway, "/image/describe", {"image_url": site.url("/images/p.png"), "task": "caption",
                                                          "model": MODEL, "max_tokens": 4})
    assert status == 200, body


def test_describe_endpoint_bad_task_and_no_image(llm_gateway):
    status, body = _post(llm_gateway, "/image/describe", {"image": IMAGE, "task": "poem", "model": MODEL})
    assert status == 400, body
    status, body = _post(llm_gateway, "/image/describe", {"image": IMAGE, "task": {"type": "nonsense"},
                                                          "model": MODEL})
    assert status == 422 and "not a valid JSON Schema" in json.dumps(body)
    status, body = _post(llm_gateway, "/image/describe", {"model": MODEL})
    assert status == 422 and "no image given" in json.dumps(body)


def test_embed_endpoint_one_text_and_many(llm_gateway, ollama):
    status, body = _post(llm_gateway, "/text/embed", {"texts": ["a red bag", "a blue bag"], "model": MODEL})
    assert status == 200, body
    vectors = body["outputs"]["vectors"]
    assert len(vectors) == 2 and len(vectors[0]) == body["outputs"]["dimensions"] > 0
    status, body = _post(llm_gateway, "/text/embed", {"texts": "one", "model": MODEL})
    assert status == 200 and len(body["outputs"]["vectors"]) == 1
    status, body = _post(llm_gateway, "/text/embed", {"texts": [], "model": MODEL})
    assert status == 400
