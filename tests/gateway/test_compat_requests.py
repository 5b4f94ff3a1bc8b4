"""How OpenAI and Ollama requests become text.chat inputs, without a server: every field honoured or refused."""

from __future__ import annotations

import base64
import io

import pytest

from gateway import ollama_api as ol
from gateway import openai_compat as oa


def _png(fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_compat_openai_request_maps_every_field():
    data = base64.b64encode(_png()).decode()
    inputs, n = oa.chat_inputs({
        "model": "llm", "n": 3, "stop": "END", "seed": 4, "max_completion_tokens": 9, "temperature": 0.3,
        "top_p": 0.5, "task": "ocr", "privacy_mode": "strict", "stream": True,
        "stream_options": {"include_usage": True}, "response_format": {"type": "json_object"},
        "messages": [{"role": "developer", "content": "sys"},
                     {"role": "user", "content": [{"type": "image_url", "image_url": {
                         "url": "data:image/png;base64," + data, "detail": "high"}}]}]})
    assert n == 3
    assert inputs == {"messages": [{"role": "system", "content": "sys"},
                                   {"role": "user", "content": oa.OCR_PROMPT}],
                      "model": "llm", "images": [data], "task": "vision", "privacy": "strict", "max_tokens": 9,
                      "temperature": 0.3, "top_p": 0.5, "seed": 4, "stop": ["END"], "format": "json"}
    schema = {"type": "object"}
    inputs, _ = oa.chat_inputs({"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}})
    assert inputs["format"] == schema
    workflow = oa.chat_workflow({**inputs, "seed": 10}, 2)
    assert [node.literals["seed"] for node in workflow.nodes.values()] == [10, 11]


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": "x"}], "tools": []}, "tools"),
    ({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 1}, "frequency_penalty"),
    ({"messages": [{"role": "user", "content": "x", "name": "me"}]}, "messages[0]: name"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
    ({"messages": [{"role": [None], "content": "x"}]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
     "messages[0].content[0].image_url.url"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 3, "max_completion_tokens": 4},
     "max_completion_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 9}, "n"),
    ({"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}}, "stream_options"),
    ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "grammar"}}, "response_format"),
    ({"messages": [{"role": "user", "content": "x"}], "task": ["chat"]}, "task"),
    ({"messages": [{"role": "user", "content": "x"}], "privacy_mode": "loose"}, "privacy_mode"),
])
def test_compat_openai_refuses_what_it_does_not_honour(body, param):
    with pytest.raises(oa.OpenAIError) as refused:
        oa.chat_inputs(body)
    assert refused.value.param == param


def test_compat_openai_http_image_urls_are_fetched_later():
    inputs, _ = oa.chat_inputs({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]})
    assert isinstance(inputs["images"][0], oa.Remote) and inputs["images"][0] == "https://example.com/a.png"


def test_compat_ollama_options_map_or_are_refused():
    inputs: dict = {}
    ol._options({"options": {"temperature": 0.1, "num_predict": 7, "seed": 2, "stop": "x", "top_p": 0.4}}, inputs)
    assert inputs == {"temperature": 0.1, "max_tokens": 7, "seed": 2, "stop": ["x"], "top_p": 0.4}
    unlimited: dict = {}
    ol._options({"options": {"num_predict": -1}}, unlimited)
    assert unlimited == {}  # no limit: the node's own
    with pytest.raises(ol.OllamaError, match="'num_ctx'"):
        ol._options({"options": {"num_ctx": 2048}}, {})
    assert ol._keep_alive_zero(0) and ol._keep_alive_zero("0s") and not ol._keep_alive_zero("5m")
    with pytest.raises(ol.OllamaError):
        ol._falsy_only({"raw": True}, ("raw",))


def test_compat_chat_node_reads_images_as_png_or_jpeg():
    from engine import InvalidInput
    from nodes.llm.generate import image_bytes

    png, webp = _png(), _png("WEBP")
    assert image_bytes(base64.b64encode(png).decode(), "images[0]") == png
    assert image_bytes("data:image/png;base64," + base64.b64encode(png).decode(), "images[0]") == png
    assert image_bytes(base64.b64encode(webp).decode(), "images[0]")[:4] == b"\x89PNG"  # converted
    with pytest.raises(InvalidInput, match="not base64"):
        image_bytes("***", "images[0]")
    with pytest.raises(InvalidInput, match="not an image"):
        image_bytes(base64.b64encode(b"plain text").decode(), "images[1]")


def test_compat_model_kinds_of_ollama_names():
    from engine.models.store import LocalModel

    kinds = {ref: oa.model_kind(LocalModel(ref, "ollama", 1, "Ollama")) for ref in (
        "ollama:qwen2.5vl:3b", "ollama:llama3.2:latest", "ollama:nomic-embed-text:latest", "ollama:llava:7b")}
    assert list(kinds.values()) == ["vision", "chat", "embedding", "vision"]
