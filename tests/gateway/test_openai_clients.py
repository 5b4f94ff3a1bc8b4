"""The official `openai` client against a real `flow serve`: chat (plain, streamed with usage, n, stop),
vision through an image part, structured output, embeddings with usage, models by id, unsupported fields,
per-request privacy, and the bearer token."""

from __future__ import annotations

import base64
import json

import pytest

from compat_support import REMOTE, TOKEN, ImageHost, png_b64, start_compat_server

pytestmark = pytest.mark.slow  # one real `flow serve` over tiny models for the module


@pytest.fixture(scope="module")
def served_compat(tmp_path_factory):
    server, ollama = start_compat_server(tmp_path_factory, "openai-clients")
    yield server, ollama
    server.stop()
    ollama.stop()


@pytest.fixture
def client(served_compat):
    from openai import OpenAI

    return OpenAI(base_url=served_compat[0].url + "/v1", api_key=TOKEN, max_retries=0, timeout=120)


def test_openai_chat_names_the_model_and_streams_usage(client):
    ask = dict(model="llm", messages=[{"role": "developer", "content": "Be brief."},
                                      {"role": "user", "content": "hello there"}],
               max_completion_tokens=10, seed=5, temperature=0.7, top_p=0.95)
    plain = client.chat.completions.create(**ask)
    assert plain.model == "llm"  # the model used, by its id (never a server path, never "default")
    assert plain.usage.completion_tokens >= 1 and plain.usage.prompt_tokens > 0
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # the usage chunk ends the stream
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain.choices[0].message.content
    assert all(c.usage is None for c in chunks[:-1])
    default = client.chat.completions.create(messages=[{"role": "user", "content": "hi"}], model="", max_tokens=4)
    assert default.model == "llm"  # the server's FLOW_TEXT_MODEL, named


def test_openai_n_choices_and_stop(client):
    answer = client.chat.completions.create(model="llm", messages=[{"role": "user", "content": "count"}],
                                            max_tokens=8, n=2, seed=1)
    assert [c.index for c in answer.choices] == [0, 1]
    assert answer.choices[0].message.content != answer.choices[1].message.content  # seeds 1 and 2
    unseeded = client.chat.completions.create(model="llm", messages=[{"role": "user", "content": "count"}],
                                              max_tokens=8, n=2)
    assert unseeded.choices[0].message.content != unseeded.choices[1].message.content  # each draws its seed
    full = answer.choices[0].message.content
    assert len(full) > 3
    stop = full[2:4]
    cut = client.chat.completions.create(model="llm", messages=[{"role": "user", "content": "count"}],
                                         max_tokens=8, seed=1, stop=[stop])
    assert stop not in cut.choices[0].message.content and full.startswith(cut.choices[0].message.content)


def test_openai_vision_with_an_image_part(client):
    import openai

    picture = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png_b64()}}
    answer = client.chat.completions.create(model="tiny-vlm", max_tokens=6, seed=2, messages=[
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, picture]}])
    assert answer.model == "tiny-vlm" and answer.choices[0].message.content
    assert answer.usage.prompt_tokens > 10  # the image's tokens are in the prompt
    # the text-only model cannot see: an image is never silently dropped
    with pytest.raises(openai.APIStatusError) as blind:
        client.chat.completions.create(model="llm", max_tokens=4, messages=[{"role": "user", "content": [picture]}])
    assert blind.value.status_code in (400, 422)
    host = ImageHost(base64.b64decode(png_b64()))
    try:  # an http(s) URL is fetched through the SSRF guard (the server allows private addresses, for this test)
        fetched = client.chat.completions.create(model="tiny-vlm", max_tokens=6, seed=2, messages=[
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": host.url}}]}])
        assert fetched.choices[0].message.content == answer.choices[0].message.content  # the same picture
        with pytest.raises(openai.APIStatusError) as missing:
            client.chat.completions.create(model="tiny-vlm", messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": host.url + ".gone"}}]}])
        assert missing.value.status_code == 502 and "404" in missing.value.body["message"]
    finally:
        host.stop()
    with pytest.raises(openai.PermissionDeniedError) as metadata:  # cloud metadata: refused whatever the setting
        client.chat.completions.create(model="tiny-vlm", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}]}])
    assert metadata.value.body["type"] == "invalid_request_error"
    # task picks the default model of the task: vision's (with an Ollama server: qwen2.5vl, not pulled here)
    with pytest.raises(openai.NotFoundError) as default:
        client.chat.completions.create(model="", extra_body={"task": "ocr"}, messages=[
            {"role": "user", "content": [picture]}])
    assert "qwen2.5vl" in default.value.body["message"]


def test_openai_structured_output(client, served_compat):
    from llm_fakes import OLLAMA_NAME

    ollama = served_compat[1]
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "people": {"type": "integer"}},
              "required": ["city", "people"], "additionalProperties": False}
    answer = client.chat.completions.create(
        model="ollama:" + OLLAMA_NAME, messages=[{"role": "user", "content": "a city"}], seed=4,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}})
    value = json.loads(answer.choices[0].message.content)
    assert set(value) == {"city", "people"} and isinstance(value["people"], int)
    assert answer.model == "ollama:" + OLLAMA_NAME
    assert ollama.requests[-1][1]["format"] == schema  # the schema went to the backend's structured output
    answer = client.chat.completions.create(model="ollama:" + OLLAMA_NAME, response_format={"type": "json_object"},
                                            messages=[{"role": "user", "content": "anything"}], seed=4)
    assert isinstance(json.loads(answer.choices[0].message.content), dict)
    assert ollama.requests[-1][1]["format"] == "json"


def test_openai_unsupported_fields_are_400_naming_them(client):
    import openai

    message = [{"role": "user", "content": "x"}]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as tools:
        client.chat.completions.create(model="llm", messages=message, tools=[tool])
    assert tools.value.body["param"] == "tools" and "'tools'" in tools.value.body["message"]
    assert tools.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as extra:
        client.chat.completions.create(model="llm", messages=message, logprobs=True, extra_body={"mirostat": 1})
    assert "'logprobs'" in extra.value.body["message"] and "'mirostat'" in extra.value.body["message"]
    with pytest.raises(openai.BadRequestError) as streamed_n:
        client.chat.completions.create(model="llm", messages=message, n=2, stream=True)
    assert streamed_n.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as task:
        client.chat.completions.create(model="", messages=message, extra_body={"task": "embedding"})
    assert task.value.body["param"] == "task"


def test_openai_privacy_mode_strict_refuses_a_remote_model(client):
    import openai

    ask = dict(model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}], max_tokens=3)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(**ask, extra_body={"privacy_mode": "strict"})
    assert "privacy" in refused.value.body["message"] and REMOTE.split("/v1")[0] in refused.value.body["message"]
    with pytest.raises(openai.APIStatusError) as tried:  # flexible: allowed, so it tries the (dead) server
        client.chat.completions.create(**ask, extra_body={"privacy_mode": "flexible"})
    assert tried.value.status_code != 403


def test_openai_embeddings_report_usage(client):
    result = client.embeddings.create(model="llm", input=["rain falls", "sun"])
    assert [d.index for d in result.data] == [0, 1] and len(result.data[0].embedding) > 1
    assert result.usage.prompt_tokens >= 3 and result.usage.total_tokens == result.usage.prompt_tokens
    assert result.model == "llm"


def test_openai_models_by_id_with_kind(client):
    import openai
    from llm_fakes import OLLAMA_NAME

    listed = {m.id: m.to_dict()["kind"] for m in client.models.list().data}
    assert listed["llm"] == "chat" and listed["tiny-vlm"] == "vision" and listed["ollama:" + OLLAMA_NAME] == "chat"
    assert not any(i.startswith("/") for i in listed)  # never a server path
    assert client.models.retrieve("tiny-vlm").to_dict()["kind"] == "vision"
    assert client.models.retrieve("ollama:" + OLLAMA_NAME).id == "ollama:" + OLLAMA_NAME
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("hf:nobody/nothing")


def test_openai_token_is_required(served_compat):
    import openai
    from openai import OpenAI

    wrong = OpenAI(base_url=served_compat[0].url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert refused.value.body["type"] == "invalid_request_error" and "token" in refused.value.body["message"]
