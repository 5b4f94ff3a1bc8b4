"""The official `ollama` client against a real `flow serve`'s Ollama-compatible /api: version, list, ps, show,
generate, chat (streamed and not, with an image), embed, embeddings, pull with progress, delete, errors, token."""

from __future__ import annotations

import json
import urllib.request

import pytest

from compat_support import TOKEN, png_b64, start_compat_server

pytestmark = pytest.mark.slow  # one real `flow serve` over tiny models for the module


@pytest.fixture(scope="module")
def served_compat(tmp_path_factory):
    server, ollama = start_compat_server(tmp_path_factory, "ollama-api")
    yield server, ollama
    server.stop()
    ollama.stop()


@pytest.fixture
def client(served_compat):
    from ollama import Client

    return Client(host=served_compat[0].url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)


def _get(server, path: str):
    request = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_ollama_version_list_show(client, served_compat):
    from llm_fakes import OLLAMA_NAME

    assert _get(served_compat[0], "/api/version")["version"].count(".") == 2
    names = {m.model: m for m in client.list().models}
    assert {"llm", "tiny-vlm", "ollama:" + OLLAMA_NAME} <= set(names)
    assert not any(n.startswith("/") for n in names) and names["llm"].size > 0
    assert client.show("tiny-vlm").capabilities == ["completion", "vision"]
    assert client.show("llm").capabilities == ["completion"]
    import ollama

    with pytest.raises(ollama.ResponseError) as missing:
        client.show("nothing-here")
    assert missing.value.status_code == 404 and "GET /api/tags" in missing.value.error


def test_ollama_generate_and_chat_streamed_and_not(client):
    options = {"temperature": 0.7, "num_predict": 8, "seed": 3, "top_p": 0.9}
    whole = client.generate(model="llm", prompt="hello", options=options)
    assert whole.done and whole.response and whole.model == "llm" and whole.eval_count >= 1
    pieces = list(client.generate(model="llm", prompt="hello", options=options, stream=True))
    assert pieces[-1].done and not any(p.done for p in pieces[:-1])
    assert "".join(p.response for p in pieces) == whole.response  # same seed: same text
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    chat = client.chat(model="llm", messages=messages, options=options, stream=False)
    assert chat.message.role == "assistant" and chat.message.content and chat.done_reason in ("stop", "length")
    streamed = list(client.chat(model="llm", messages=messages, options=options, stream=True))
    assert len(streamed) >= 2 and streamed[-1].done
    assert "".join(p.message.content or "" for p in streamed) == chat.message.content
    assert streamed[-1].prompt_eval_count > 0


def test_ollama_ps_and_keep_alive_zero_unloads(client):
    client.generate(model="llm", prompt="hello", options={"num_predict": 2})
    assert "llm" in {m.model for m in client.ps().models}  # the model manager holds it
    client.generate(model="llm", prompt="hello", options={"num_predict": 2, "seed": 9}, keep_alive=0)
    assert "llm" not in {m.model for m in client.ps().models}
    assert client.generate(model="llm", prompt="", keep_alive=0).done_reason == "unload"


def test_ollama_chat_with_an_image_and_json_format(client):
    from llm_fakes import OLLAMA_NAME

    seen = client.chat(model="tiny-vlm", options={"num_predict": 5, "seed": 1},
                       messages=[{"role": "user", "content": "What is this?", "images": [png_b64()]}])
    assert seen.message.content and seen.model == "tiny-vlm" and seen.prompt_eval_count > 10
    described = client.generate(model="tiny-vlm", prompt="Describe.", images=[png_b64()], options={"num_predict": 4})
    assert described.response
    answer = client.chat(model="ollama:" + OLLAMA_NAME, messages=[{"role": "user", "content": "x"}], format="json")
    assert isinstance(json.loads(answer.message.content), dict)


def test_ollama_embed_and_embeddings(client):
    result = client.embed(model="llm", input=["rain", "sun falls"])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) > 1 and result.prompt_eval_count >= 2
    single = client.embeddings(model="llm", prompt="rain")
    assert single.embedding == pytest.approx(result.embeddings[0], abs=1e-5)


def test_ollama_pull_with_progress_then_delete(client, served_compat):
    progress = list(client.pull("ollama:pulled:latest", stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    assert any(p.total and p.completed for p in progress)  # real progress lines from the model.pull job
    assert "ollama:pulled:latest" in {m.model for m in client.list().models}
    assert client.pull("llm").status == "success"  # a local folder: already here
    import ollama

    with pytest.raises(ollama.ResponseError) as local:
        client.delete("llm")  # the user's own folder is never deleted
    assert local.value.status_code == 400
    jobs = _get(served_compat[0], "/jobs?limit=50")
    assert any(j["name"] == "api.pull" and j["state"] == "finished" for j in jobs["jobs"])  # a job in the queue
    assert any(j["name"] == "api.chat" for j in jobs["jobs"]) or any(j["name"] == "api.generate"
                                                                     for j in jobs["jobs"])


def test_ollama_unsupported_options_and_errors_in_ollama_shape(client, served_compat):
    import ollama

    with pytest.raises(ollama.ResponseError) as option:
        client.generate(model="llm", prompt="x", options={"num_ctx": 4096})
    assert option.value.status_code == 400 and "'num_ctx'" in option.value.error
    with pytest.raises(ollama.ResponseError) as tools:
        client.chat(model="llm", messages=[{"role": "user", "content": "x"}],
                    tools=[{"type": "function", "function": {"name": "f", "description": "d",
                                                             "parameters": {"type": "object", "properties": {}}}}])
    assert tools.value.status_code == 400 and "tools" in tools.value.error
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="hf:nobody/nothing", messages=[{"role": "user", "content": "x"}], stream=False)
    assert missing.value.status_code == 404 and "flow pull" in missing.value.error
    request = urllib.request.Request(served_compat[0].url + "/api/tags")  # no token
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401 and "token" in json.loads(refused.value.read())["error"]


def test_ollama_client_without_the_token_is_refused(served_compat):
    import ollama

    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=served_compat[0].url).list()
    assert refused.value.status_code == 401
