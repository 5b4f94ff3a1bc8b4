"""POST /chat (the small LLM API's request shape) and `flow chat`, on the tiny model behind the fake Ollama."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from extract_support import MODEL

FLOW = str(Path(sys.executable).with_name("flow"))


def test_chat_endpoint_official_request_shape(llm_gateway, ollama):
    async def scenario():
        async with llm_gateway() as client:
            response = await client.post("/chat", json={
                "message": "hello", "system": "You are terse.", "context": {"user": "Ada", "plan": "pro"},
                "max_tokens": 8, "temperature": 0, "model": MODEL})
            body = await response.json()
            assert response.status == 200, body
            job = await (await client.get(response.headers["Content-Location"])).json()  # the job it was
            return body, job

    body, job = asyncio.run(scenario())
    outputs = body  # the small LLM API's shape: {"content": ..., "usage": ...}, not a job
    assert set(outputs) == {"content", "usage"} and job["state"] == "finished" and job["outputs"] == body
    assert isinstance(outputs["content"], str) and outputs["usage"]["completion_tokens"] <= 8
    path, sent = ollama.requests[-1]
    assert path == "/api/chat" and sent["model"] == "tiny:latest"
    system = sent["messages"][0]
    assert system["role"] == "system" and "You are terse." in system["content"] and '"plan": "pro"' in system["content"]
    assert sent["messages"][-1] == {"role": "user", "content": "hello"}
    assert sent["options"]["num_predict"] == 8 and sent["options"]["temperature"] == 0


def test_chat_endpoint_takes_a_conversation(llm_gateway, ollama):
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "and now?"}]

    async def scenario():
        async with llm_gateway() as client:
            response = await client.post("/chat", json={"messages": conversation, "max_tokens": 4, "model": MODEL})
            return response.status, await response.json()

    status, body = asyncio.run(scenario())
    assert status == 200, body
    assert ollama.requests[-1][1]["messages"] == conversation


def test_chat_endpoint_message_and_messages_errors(llm_gateway):
    async def scenario():
        async with llm_gateway() as client:
            both = await client.post("/chat", json={"message": "a", "messages": [{"role": "user", "content": "b"}],
                                                    "model": MODEL})
            neither = await client.post("/chat", json={"model": MODEL})
            last = await client.post("/chat", json={"messages": [{"role": "assistant", "content": "b"}],
                                                    "model": MODEL})
            wrong = await client.post("/chat", json={"message": "a", "context": "not an object", "model": MODEL})
            return [(r.status, await r.json()) for r in (both, neither, last, wrong)]

    answers = asyncio.run(scenario())
    for status, body in answers:
        assert 400 <= status < 500, body
    assert "give one of them" in json.dumps(answers[0][1])
    assert "no message given" in json.dumps(answers[1][1])
    assert "must be the user's" in json.dumps(answers[2][1])


def test_chat_endpoint_flow_chat_subcommand(ollama, tmp_path):
    env = {**os.environ, "FLOW_OLLAMA_URL": ollama.url, "FLOW_OUTPUT_DIR": str(tmp_path / "out"),
           "FLOW_MODELS_DIR": str(tmp_path / "models"), "FLOW_JOBS_DB": str(tmp_path / "jobs.sqlite3")}
    done = subprocess.run([FLOW, "chat", "hello there", "--system", "Be brief.", "--context", '{"lang": "en"}',
                           "--max-tokens", "6", "--model", MODEL, "--json"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)["outputs"]
    assert set(outputs) == {"content", "usage"} and outputs["usage"]["completion_tokens"] <= 6
    sent = ollama.requests[-1][1]["messages"]
    assert sent[-1] == {"role": "user", "content": "hello there"} and '"lang": "en"' in sent[0]["content"]
    # a conversation instead of a message: the positional message may be left out
    done = subprocess.run([FLOW, "chat", "--messages", json.dumps([{"role": "user", "content": "yo"}]),
                           "--max-tokens", "4", "--model", MODEL, "--json"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ollama.requests[-1][1]["messages"][-1] == {"role": "user", "content": "yo"}
