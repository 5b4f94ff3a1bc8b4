"""text.evaluate: a schema-valid result is enforced; an invalid answer is retried once, then a clear error."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from llm_tiny import TINY

from engine import NodeError
from engine.settings import Settings
from nodes.llm import TextBackends
from nodes.llm.evaluate import result_schema


@pytest.fixture
def openai_manager(make_manager, fake_openai):
    return make_manager(config=TextBackends(Settings(openai_base_url=fake_openai.url + "/v1")))


def _chat_requests(server):
    return [body for path, body in server.requests if path == "/v1/chat/completions"]


def test_evaluate_returns_a_schema_valid_result(run_node, make_manager, fake_ollama):
    criteria = {"clarity": "easy to follow", "accuracy": "true to the reference"}
    out, _ = run_node("text.evaluate", dict(text="The sun rises in the east.", criteria=criteria,
                                            reference="The sun rises in the east.", model="ollama:tiny", seed=3),
                      make_manager(fake_ollama.url))
    result = out["result"]
    Draft202012Validator(result_schema(["clarity", "accuracy"])).validate(result)
    assert set(result["scores"]) == {"clarity", "accuracy"} and 0 <= result["overall"] <= 10
    chat = [body for path, body in fake_ollama.requests if path == "/api/chat"]
    assert len(chat) == 1 and chat[0]["format"] == result_schema(["clarity", "accuracy"])
    prompt = chat[0]["messages"][-1]["content"]
    assert "- clarity: easy to follow" in prompt and "Reference:\nThe sun rises" in prompt
    assert "retried" not in out["usage"]


def test_evaluate_takes_a_list_of_criteria(run_node, openai_manager, fake_openai):
    out, _ = run_node("text.evaluate", dict(text="hello", criteria=["tone"], model="openai:tiny", seed=1),
                      openai_manager)
    assert set(out["result"]["scores"]) == {"tone"} and set(out["result"]["reasons"]) == {"tone"}
    assert _chat_requests(fake_openai)[0]["response_format"]["json_schema"]["schema"] == result_schema(["tone"])


def test_an_invalid_answer_is_retried_once(run_node, openai_manager, fake_openai):
    fake_openai.invalid_answers = 1
    out, _ = run_node("text.evaluate", dict(text="hello", criteria=["tone"], model="openai:tiny", seed=10),
                      openai_manager)
    Draft202012Validator(result_schema(["tone"])).validate(out["result"])
    assert out["usage"]["retried"] is True
    first, second = _chat_requests(fake_openai)
    assert (first["seed"], second["seed"]) == (10, 11)
    assert second["messages"][-2]["role"] == "assistant" and "invalid" in second["messages"][-1]["content"]


def test_two_invalid_answers_are_a_clear_error(run_node, openai_manager, fake_openai):
    fake_openai.invalid_answers = 2
    with pytest.raises(NodeError, match=r"gave no valid evaluation in 2 attempts \(last: the answer is not JSON"):
        run_node("text.evaluate", dict(text="hello", criteria=["tone"], model="openai:tiny", seed=1), openai_manager)
    assert len(_chat_requests(fake_openai)) == 2


def test_evaluate_in_process_without_constrained_decoding_fails_clearly(run_node):
    # The tiny random model cannot write the JSON asked of it: two attempts, then the error says what to do.
    with pytest.raises(NodeError, match=r"gave no valid evaluation in 2 attempts .*use a larger model"):
        run_node("text.evaluate", dict(text="hello", criteria=["tone"], model=TINY, max_tokens=8, seed=1))


def test_generate_with_a_schema_validates_the_answer_too(run_node, openai_manager, fake_openai):
    fake_openai.invalid_answers = 2
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    with pytest.raises(NodeError, match=r"no valid JSON answer in 2 attempts"):
        run_node("text.generate", dict(prompt="x", model="openai:tiny", seed=1, format=schema), openai_manager)
