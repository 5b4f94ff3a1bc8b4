"""The OpenAI-compatible backend (the official client) against a local server (plain JSON and SSE), and privacy."""

from __future__ import annotations

import json
import socket

import pytest
from llm_fakes import png_size
from zoo import Recorder, link

from engine import ModelNotFound, NodeError
from engine.settings import Settings
from nodes.llm import TextBackends
from nodes.llm.backend import PrivacyRefused


@pytest.fixture
def openai_manager(make_manager, fake_openai):
    """A manager whose text configuration points at the local OpenAI-compatible server (loopback: local)."""
    return make_manager(config=TextBackends(Settings(privacy="strict", openai_base_url=fake_openai.url + "/v1",
                                                     openai_api_key="sk-test")))


def test_generate_streams_server_sent_events(run_node, openai_manager, fake_openai, generator):
    events = Recorder()
    out, _ = run_node("text.generate", dict(prompt="a story", model="openai:tiny", max_tokens=30, seed=6,
                                            stop=["qq"]), openai_manager, listener=events)
    body = fake_openai.requests[-1][1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["seed"], body["stop"], body["top_p"]) == (30, 6, ["qq"], 0.9)
    _, pieces, count = generator.pieces(body["messages"], max_tokens=30, seed=6)
    assert out["text"] == "".join(pieces) and out["text"]
    assert [e.message for e in events if e.kind == "node.progress"] == pieces
    usage = out["usage"]
    assert usage["backend"] == "openai" and usage["model"] == "openai:tiny"
    assert usage["completion_tokens"] == count and usage["done_reason"] in ("stop", "length")


def test_structured_output_uses_a_plain_request_with_the_schema(run_node, openai_manager, fake_openai):
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 3}},
              "required": ["n"], "additionalProperties": False}
    out, _ = run_node("text.generate", dict(prompt="count", model="openai:tiny", seed=1, format=schema),
                      openai_manager)
    body = fake_openai.requests[-1][1]
    assert "stream" not in body or body["stream"] is False
    assert body["response_format"]["json_schema"]["schema"] == schema
    assert 0 <= json.loads(out["text"])["n"] <= 3


def test_json_format_asks_for_a_json_object(run_node, openai_manager, fake_openai):
    out, _ = run_node("text.generate", dict(prompt="anything", model="openai:tiny", seed=1, format="json"),
                      openai_manager)
    assert fake_openai.requests[-1][1]["response_format"] == {"type": "json_object"}
    assert isinstance(json.loads(out["text"]), dict)


def test_wrong_key_says_which_setting_to_fix(run_node, make_manager, fake_openai):
    fake_openai.api_key = "sk-right"
    manager = make_manager(config=TextBackends(Settings(openai_base_url=fake_openai.url + "/v1",
                                                                    openai_api_key="sk-wrong")))
    with pytest.raises(NodeError, match=r"refused the key \(Incorrect API key provided.\); set FLOW_OPENAI_API_KEY"):
        run_node("text.generate", dict(prompt="hi", model="openai:tiny", seed=1), manager)


def test_unknown_model_is_model_not_found(run_node, openai_manager):
    with pytest.raises(NodeError, match=r"The model `nope` does not exist") as info:
        run_node("text.generate", dict(prompt="hi", model="openai:nope", seed=1), openai_manager)
    assert isinstance(info.value.cause, ModelNotFound)


def test_openai_model_without_a_server_says_what_to_set(run_node, make_manager):
    with pytest.raises(NodeError, match="needs an OpenAI-compatible server; set FLOW_OPENAI_BASE_URL"):
        run_node("text.generate", dict(prompt="hi", model="openai:gpt-4o-mini", seed=1), make_manager())


@pytest.mark.parametrize("configured, requested, who", [
    ("strict", "flexible", "the server's FLOW_PRIVACY"),
    ("flexible", "strict", "this node's privacy input"),
])
def test_strict_privacy_refuses_a_remote_model_before_any_request(run_node, make_manager, configured, requested, who):
    config = TextBackends(Settings(privacy=configured, openai_base_url="https://api.example.invalid/v1"))
    with pytest.raises(NodeError, match=rf"outside this machine, and privacy is strict \(set by {who}\)") as info:
        run_node("text.generate", dict(prompt="hi", model="openai:gemini-2.0-flash", seed=1, privacy=requested),
                 make_manager(config=config))
    assert isinstance(info.value.cause, PrivacyRefused)


def test_flexible_privacy_reaches_a_remote_server(run_node, make_manager, fake_openai):
    # The local server stands in for the cloud: reached by this machine's host name, it counts as remote.
    host = socket.gethostname()
    try:
        if not socket.gethostbyname(host).startswith("127."):
            pytest.skip(f"host name {host!r} does not resolve to the loopback the fake server listens on")
    except OSError:
        pytest.skip(f"host name {host!r} does not resolve")
    url = fake_openai.url.replace("127.0.0.1", host) + "/v1"
    out, _ = run_node("text.generate", dict(prompt="hi", model="openai:tiny", max_tokens=4, seed=1),
                      make_manager(config=TextBackends(Settings(privacy="flexible", openai_base_url=url))))
    assert out["usage"]["backend"] == "openai"
    with pytest.raises(NodeError, match="privacy is strict"):
        run_node("text.generate", dict(prompt="hi", model="openai:tiny", seed=1, privacy="strict"),
                 make_manager(config=TextBackends(Settings(privacy="flexible", openai_base_url=url))))


def test_loopback_server_counts_as_local():
    from nodes.llm.backend import _is_loopback

    assert _is_loopback("http://127.0.0.1:8080/v1") and _is_loopback("http://localhost:1234/v1")
    assert _is_loopback("http://[::1]:8000/v1")
    assert not _is_loopback("https://generativelanguage.googleapis.com/v1beta/openai")
    assert not _is_loopback("http://10.0.0.5:8000/v1")


def test_describe_image_sends_a_data_url(run_node, openai_manager, fake_openai):
    run_node("text.describe_image", dict(image=link("img", "image"), model="openai:tiny", max_tokens=4, seed=1),
             openai_manager, extra={"img": ("testing.solid_image", {"width": 10, "height": 6})})
    assert [png_size(data) for data in fake_openai.images] == [(10, 6)]


def test_embed_through_openai(run_node, openai_manager, generator):
    out, _ = run_node("text.embed", dict(texts=["x y", "z"], model="openai:tiny"), openai_manager)
    assert out["vectors"] == [pytest.approx(generator.embed("x y")), pytest.approx(generator.embed("z"))]
    assert out["dimensions"] == 32
