"""The Ollama backend (the official async client) against the fake Ollama server in llm_fakes.

The fake stands in for the Ollama server, which cannot be installed on these machines: a real
HTTP server on 127.0.0.1 speaking Ollama's documented API and answering with the tiny model.
"""

from __future__ import annotations

import json
import socket

import pytest
from jsonschema import Draft202012Validator
from llm_fakes import OLLAMA_NAME, png_size
from zoo import Recorder, link

from engine import ModelNotFound, NodeError
from engine.errors import PullFailed
from engine.models import OllamaUnavailable
from engine.settings import Settings
from nodes.llm import TextBackends

MODEL = "ollama:tiny"


def test_generate_streams_ndjson_and_reports_the_final_statistics(run_node, make_manager, fake_ollama, generator):
    events = Recorder()
    out, _ = run_node("text.generate", dict(prompt="tell a story", system="be brief", model=MODEL, max_tokens=30,
                                            seed=4, stop=["zz"]), make_manager(fake_ollama.url), listener=events)
    chat = [body for path, body in fake_ollama.requests if path == "/api/chat"]
    assert len(chat) == 1 and chat[0]["stream"] is True and chat[0]["model"] == OLLAMA_NAME
    assert chat[0]["options"] == {"num_predict": 30, "temperature": 0.8, "top_p": 0.9, "seed": 4, "stop": ["zz"]}
    assert chat[0]["messages"] == [{"role": "system", "content": "be brief"},
                                   {"role": "user", "content": "tell a story"}]
    _, pieces, count = generator.pieces(chat[0]["messages"], max_tokens=30, seed=4)
    assert out["text"] == "".join(pieces) and out["text"]
    progress = [e.message for e in events if e.kind == "node.progress"]
    assert progress == pieces
    usage = out["usage"]
    assert usage["backend"] == "ollama" and usage["model"] == "ollama:tiny:latest"
    assert usage["completion_tokens"] == count and usage["prompt_tokens"] > 5
    assert usage["done_reason"] in ("stop", "length") and usage["eval_s"] >= 0 and usage["load_s"] > 0


def test_generate_with_a_json_schema_gets_structured_output(run_node, make_manager, fake_ollama):
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "stars": {"type": "integer",
              "minimum": 1, "maximum": 5}}, "required": ["title", "stars"]}
    out, _ = run_node("text.generate", dict(prompt="rate this film", model=MODEL, seed=2, format=schema),
                      make_manager(fake_ollama.url))
    Draft202012Validator(schema).validate(json.loads(out["text"]))
    chat = [body for path, body in fake_ollama.requests if path == "/api/chat"]
    assert chat[0]["format"] == schema and chat[0]["stream"] is False


def test_unknown_model_is_model_not_found_with_the_pull_command(run_node, make_manager, fake_ollama):
    with pytest.raises(NodeError, match=r"flow pull ollama:nope:latest") as info:
        run_node("text.generate", dict(prompt="hi", model="ollama:nope", seed=1), make_manager(fake_ollama.url))
    assert isinstance(info.value.cause, ModelNotFound)
    assert "/api/chat" not in fake_ollama.paths()


def test_a_404_from_chat_is_model_not_found(run_node, make_manager, fake_ollama):
    fake_ollama.loaded["gone:latest"] = 10  # /api/ps claims it, /api/chat answers 404
    with pytest.raises(NodeError, match=r"model 'gone:latest' not found.*flow pull ollama:gone:latest"):
        run_node("text.generate", dict(prompt="hi", model="ollama:gone", seed=1), make_manager(fake_ollama.url))


def test_missing_model_is_pulled_on_demand_when_enabled(run_node, make_manager, fake_ollama):
    fake_ollama.pullable.add("fresh:latest")
    fake_ollama.models.pop(OLLAMA_NAME)
    events = Recorder()
    out, _ = run_node("text.generate", dict(prompt="hi", model="ollama:fresh", max_tokens=8, seed=3),
                      make_manager(fake_ollama.url, pull_on_demand=True), listener=events)
    assert "/api/pull" in fake_ollama.paths() and "fresh:latest" in fake_ollama.models
    pulls = [e for e in events if e.kind == "node.progress" and (e.message or "").startswith("pull fresh:latest")]
    assert pulls[-1].message.endswith("success") and any(e.done == 3000 and e.total == 3000 for e in pulls)
    assert out["usage"]["model"] == "ollama:fresh:latest"


def test_a_failed_pull_on_demand_is_pull_failed(run_node, make_manager, fake_ollama):
    with pytest.raises(NodeError, match=r"pulling ollama:absent:latest failed: pull model manifest") as info:
        run_node("text.generate", dict(prompt="hi", model="ollama:absent", seed=1),
                 make_manager(fake_ollama.url, pull_on_demand=True))
    assert isinstance(info.value.cause, PullFailed)


def test_mid_stream_error_line_becomes_a_named_error(run_node, make_manager, fake_ollama):
    fake_ollama.fail_midstream.add(OLLAMA_NAME)
    with pytest.raises(NodeError, match=r"Ollama failed part-way through tiny:latest: .*out of memory.*ollama ps"):
        # A seed whose answer is long enough to reach the third piece, where the fake breaks off.
        run_node("text.generate", dict(prompt="tell a long story", model=MODEL, max_tokens=40, seed=5),
                 make_manager(fake_ollama.url))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_ollama_unavailable(run_node, make_manager):
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(NodeError, match=r"did not answer.*ollama serve.*FLOW_OLLAMA_URL") as info:
        run_node("text.generate", dict(prompt="hi", model=MODEL, seed=1), make_manager(url))
    assert isinstance(info.value.cause, OllamaUnavailable)


def test_ollama_ref_without_a_configured_server_says_what_to_set(run_node, make_manager):
    with pytest.raises(NodeError, match="no Ollama server is configured; set FLOW_OLLAMA_URL"):
        run_node("text.generate", dict(prompt="hi", model=MODEL, seed=1), make_manager())


def test_default_model_with_ollama_is_llama32(run_node, make_manager, fake_ollama):
    fake_ollama.add("llama3.2:latest")
    out, _ = run_node("text.generate", dict(prompt="hi", max_tokens=4, seed=1), make_manager(fake_ollama.url))
    assert out["usage"]["model"] == "ollama:llama3.2:latest"


def test_making_room_for_an_ollama_model_offloads_idle_torch_models(run_node, make_manager, fake_ollama):
    from llm_tiny import TINY

    manager = make_manager(fake_ollama.url, gpu_budget=300_000)
    run_node("text.generate", dict(prompt="hi", model=TINY, max_tokens=2, seed=1), manager)
    assert [m.place for m in manager.loaded()] == ["device"]
    fake_ollama.models[OLLAMA_NAME]["size"] = 250_000  # with the torch model (~125 KB) over the budget
    run_node("text.generate", dict(prompt="hi", model=MODEL, max_tokens=2, seed=1), manager)
    assert [m.place for m in manager.loaded()] == ["cpu"] and manager.counters.offloads == 1
    # Once Ollama holds it (/api/ps), no more room is made.
    run_node("text.generate", dict(prompt="hi", model=MODEL, max_tokens=2, seed=1), manager)
    assert fake_ollama.paths().count("/api/tags") == 1


def test_describe_image_sends_the_png_to_a_vision_model(run_node, make_manager, fake_ollama):
    fake_ollama.add("eyes:latest", capabilities=("completion", "vision"))
    out, _ = run_node("text.describe_image", dict(image=link("img", "image"), prompt="Transcribe the text.",
                                                  model="ollama:eyes", max_tokens=8, seed=1),
                      make_manager(fake_ollama.url), extra={"img": ("testing.solid_image", {"width": 24})})
    chat = [body for path, body in fake_ollama.requests if path == "/api/chat"][0]
    import base64

    assert png_size(base64.b64decode(chat["messages"][-1]["images"][0])) == (24, 16)
    assert chat["messages"][-1]["content"] == "Transcribe the text." and isinstance(out["text"], str)


def test_describe_image_refuses_a_model_without_vision(run_node, make_manager, fake_ollama):
    with pytest.raises(NodeError, match=r"ollama:tiny:latest cannot read images.*qwen2.5vl"):
        run_node("text.describe_image", dict(image=link("img", "image"), model=MODEL, seed=1),
                 make_manager(fake_ollama.url), extra={"img": ("testing.solid_image", {})})


def test_embed_through_ollama(run_node, make_manager, fake_ollama, generator):
    out, _ = run_node("text.embed", dict(texts=["a", "b c"], model=MODEL), make_manager(fake_ollama.url))
    assert out["vectors"] == [pytest.approx(generator.embed("a")), pytest.approx(generator.embed("b c"))]


def test_flexible_privacy_falls_back_when_ollama_is_unavailable(run_node, make_manager, fake_openai):
    config = TextBackends(Settings(privacy="flexible", openai_base_url=fake_openai.url + "/v1",
                                   text_fallback_model="openai:tiny"))
    manager = make_manager(f"http://127.0.0.1:{_closed_port()}", config=config)
    out, _ = run_node("text.generate", dict(prompt="hi", model=MODEL, max_tokens=6, seed=1), manager)
    assert out["usage"]["model"] == "openai:tiny" and out["usage"]["fallback_from"] == "ollama:tiny:latest"


def test_strict_privacy_never_falls_back_to_a_remote_model(run_node, make_manager):
    config = TextBackends(Settings(privacy="strict", openai_base_url="https://api.example.invalid/v1",
                                   text_fallback_model="openai:gpt-4o-mini"))
    manager = make_manager(f"http://127.0.0.1:{_closed_port()}", config=config)
    with pytest.raises(NodeError, match=r"did not answer.*fallback model openai:gpt-4o-mini was not tried: privacy "
                                         r"is strict"):
        run_node("text.generate", dict(prompt="hi", model=MODEL, seed=1, privacy="flexible"), manager)


@pytest.mark.parametrize("setting, sent", [("5m", "5m"), ("0", 0), ("-1", -1)])
def test_keep_alive_setting_goes_with_each_request(run_node, make_manager, fake_ollama, setting, sent):
    manager = make_manager(fake_ollama.url, config=TextBackends(Settings(ollama_keep_alive=setting)))
    run_node("text.generate", dict(prompt="hi", model=MODEL, max_tokens=2, seed=1), manager)
    chat = [body for path, body in fake_ollama.requests if path == "/api/chat"]
    assert chat[0]["keep_alive"] == sent
