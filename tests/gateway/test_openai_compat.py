"""The /v1 OpenAI-compatible routes, driven by the official `openai` client against a real `flow serve`."""

from __future__ import annotations

import sys

import pytest

from gateway_support import ROOT

sys.path.insert(0, str(ROOT / "tests" / "text"))

pytestmark = pytest.mark.slow  # each test starts a real `flow serve` over a tiny LLM (5 to 9 s)


@pytest.fixture(scope="module")
def tiny_llm_root(tmp_path_factory):
    from llm_tiny import build_tiny_llm

    root = tmp_path_factory.mktemp("v1-models")
    build_tiny_llm(root / "local" / "llm")
    return root


@pytest.fixture
def client(served, tiny_llm_root):
    from openai import OpenAI

    server = served(FLOW_MODELS_DIR=tiny_llm_root, FLOW_PROBE_DEVICE="false", HF_HUB_OFFLINE="1")
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_v1_chat_completion_streamed_then_plain_agree(client):
    ask = dict(model="llm", messages=[{"role": "user", "content": "hello there"}], max_tokens=12, seed=3)
    chunks = list(client.chat.completions.create(**ask, stream=True))  # runs the model, streaming
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(pieces) >= 2, pieces  # really streamed, not one block at the end
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    plain = client.chat.completions.create(**ask)  # same seed: the same text (from the output cache)
    assert plain.object == "chat.completion" and plain.choices[0].message.role == "assistant"
    assert plain.choices[0].message.content == "".join(pieces)
    assert plain.choices[0].finish_reason == chunks[-1].choices[0].finish_reason
    assert plain.usage.completion_tokens >= 1 and plain.usage.total_tokens > plain.usage.completion_tokens
    cached = list(client.chat.completions.create(**ask, stream=True))  # a cached reply still streams whole
    assert "".join(c.choices[0].delta.content or "" for c in cached) == "".join(pieces)


def test_v1_embeddings_and_models(client):
    result = client.embeddings.create(model="llm", input=["rain", "sun"])
    assert [d.index for d in result.data] == [0, 1] and len(result.data[0].embedding) > 1
    assert any(m.id.endswith("llm") for m in client.models.list().data)


def test_v1_errors_use_openai_shape(client):
    import openai

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="llm", messages=[], max_tokens=5)
    assert bad.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as zero:
        client.chat.completions.create(model="llm", messages=[{"role": "user", "content": "x"}], max_tokens=0)
    assert zero.value.body["param"] == "max_tokens"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="hf:nobody/nothing", messages=[{"role": "user", "content": "x"}])
    assert "flow pull hf:nobody/nothing" in missing.value.body["message"]
