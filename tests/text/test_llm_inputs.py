"""Bad inputs to the text nodes are reported before anything runs, each naming the node and the input;
the saved text workflows validate, declare their endpoints, and run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llm_tiny import TINY
from zoo import G

import nodes
from engine import Engine, NullCache, Registry, Workflow
from nodes.llm import TextBackends
from nodes.llm.ports import build_messages

ROOT = Path(__file__).resolve().parents[2]
TEXT_NODES = ["text.generate", "text.evaluate", "text.edit", "text.chat", "text.embed", "text.describe_image"]


@pytest.fixture(scope="module")
def validator():
    engine = Engine(Registry(nodes.NODES), cache=NullCache(), workers=1)
    yield engine
    engine.close()


def _problems(validator, node_type: str, **inputs) -> list[tuple[str | None, str]]:
    workflow = G().node("n", node_type, **inputs).build()
    return [(p.input, p.message) for p in validator.validate(workflow)]


@pytest.mark.parametrize("node_type, inputs, bad_input, message", [
    ("text.generate", {"prompt": ""}, "prompt", "should be non-empty"),
    ("text.generate", {"prompt": "  \n"}, "prompt", "only whitespace"),
    ("text.generate", {"prompt": "hi", "max_tokens": 0}, "max_tokens", "less than the minimum of 1"),
    ("text.generate", {"prompt": "hi", "max_tokens": 10**9}, "max_tokens", "greater than the maximum of 32768"),
    ("text.generate", {"prompt": "hi", "temperature": 3}, "temperature", "greater than the maximum of 2"),
    ("text.generate", {"prompt": "hi", "top_p": 0}, "top_p", "less than or equal to the minimum of 0"),
    ("text.generate", {"prompt": "hi", "stop": ["a"] * 9}, "stop", "is too long"),
    ("text.generate", {"prompt": "hi", "format": "yaml"}, "format", "is not valid under any of the given schemas"),
    ("text.generate", {"prompt": "hi", "format": {"type": "nonsense"}}, "format", "is not a valid JSON Schema"),
    ("text.generate", {"prompt": "hi", "context": [1, 2]}, "context", "is not valid under any of the given schemas"),
    ("text.generate", {"prompt": "hi", "privacy": "open"}, "privacy", "is not one of ['strict', 'flexible']"),
    ("text.generate", {"prompt": "hi", "model": "bogus:thing"}, "model", "the scheme 'bogus' is not supported"),
    ("text.generate", {"prompt": "hi", "model": "hf:../etc"}, "model", "is not a Hugging Face repository id"),
    ("text.generate", {"prompt": "hi", "model": "ollama:bad name"}, "model", "is not an Ollama model name"),
    ("text.generate", {"prompt": "hi", "model": "openai:has space"}, "model", "is not an OpenAI model reference"),
    ("text.chat", {"messages": []}, "messages", "should be non-empty"),
    ("text.chat", {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
     "messages", "the last message must be the user's, got 'assistant'"),
    ("text.chat", {"messages": [{"role": "robot", "content": "a"}]}, "messages", "'robot' is not one of"),
    ("text.edit", {"text": "a", "instruction": ""}, "instruction", "should be non-empty"),
    ("text.evaluate", {"text": "a", "criteria": []}, "criteria", "is not valid under any of the given schemas"),
    ("text.evaluate", {"text": "a", "criteria": {}}, "criteria", "is not valid under any of the given schemas"),
    ("text.evaluate", {"text": "a", "criteria": ["x"] * 21}, "criteria", "is not valid under any"),
    ("text.embed", {"texts": []}, "texts", "is not valid under any of the given schemas"),
    ("text.embed", {"texts": "a", "model": "nope:x"}, "model", "not supported"),
])
def test_bad_input_is_reported_before_running(validator, node_type, inputs, bad_input, message):
    problems = _problems(validator, node_type, **inputs)
    assert any(where == bad_input and message in text for where, text in problems), problems


@pytest.mark.parametrize("node_type", TEXT_NODES)
def test_every_text_node_has_a_model_input_defaulting_to_the_configured_default(node_type):
    spec = nodes.registry().get(node_type).inputs["model"]
    assert spec.default == "" and "empty = the default" in spec.description


@pytest.mark.parametrize("node_type", ["text.generate", "text.evaluate", "text.edit", "text.chat",
                                       "text.describe_image"])
def test_sampling_nodes_take_a_seed(node_type):
    assert nodes.registry().get(node_type).inputs["seed"].seed


def test_build_messages_puts_the_context_after_the_system_prompt():
    assert build_messages("be kind", {"user": "Ada"}, "hi") == [
        {"role": "system", "content": 'be kind\n\nContext (JSON):\n{\n  "user": "Ada"\n}'},
        {"role": "user", "content": "hi"}]
    assert build_messages("", None, "hi") == [{"role": "user", "content": "hi"}]


def test_text_backends_from_settings_refuses_an_unknown_privacy():
    from engine import FlowError
    from engine.settings import Settings

    config = TextBackends.from_settings(Settings.from_env({"FLOW_PRIVACY": "Flexible",
                                                           "FLOW_OPENAI_BASE_URL": "http://x/v1"}))
    assert config.privacy == "flexible" and config.settings.openai_base_url == "http://x/v1"
    assert TextBackends.from_settings(Settings.from_env({})).privacy == "strict"
    with pytest.raises(FlowError, match="privacy must be 'strict' or 'flexible', got 'open'; fix FLOW_PRIVACY"):
        TextBackends.from_settings(Settings.from_env({"FLOW_PRIVACY": "open"}))


# -- saved workflows ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, endpoint, node_type", [
    ("text_gen", "/text/gen", "text.generate"),
    ("text_eval", "/text/eval", "text.evaluate"),
    ("text_edit", "/text/edit", "text.edit"),
])
def test_saved_workflow_is_one_node_whose_params_are_its_inputs(validator, name, endpoint, node_type):
    doc = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    assert doc["endpoint"] == endpoint and "model" in doc["params"]
    (node_id, node), = doc["nodes"].items()
    assert node["type"] == node_type
    spec = nodes.registry().get(node_type)
    assert {b["input"] for p in doc["params"].values() for b in p["bind"]} == set(spec.inputs)
    for param in doc["params"].values():
        (bind,) = param["bind"]
        assert bind["node"] == node_id
        declared = spec.inputs[bind["input"]]
        if "default" in param:
            assert param["default"] == declared.default, bind["input"]
    required = {"text_gen": {"prompt": "hi"}, "text_eval": {"text": "hi"}, "text_edit": {"text": "a", "instruction": "b"}}
    assert validator.validate(Workflow.load(ROOT / "workflows" / f"{name}.json"), required[name]) == []


def test_saved_workflows_run_on_the_tiny_model(make_engine, make_manager):
    engine = make_engine(make_manager())
    gen = engine.run_sync(Workflow.load(ROOT / "workflows" / "text_gen.json"),
                          {"prompt": "a poem", "model": TINY, "max_tokens": 8, "seed": 1})
    assert set(gen.outputs) == {"text", "usage"} and gen.seeds == {"gen": 1}
    edit = engine.run_sync(Workflow.load(ROOT / "workflows" / "text_edit.json"),
                           {"text": "hello", "instruction": "shout", "model": TINY, "max_tokens": 8, "seed": 1})
    assert set(edit.outputs) == {"text", "diff", "usage"}


@pytest.mark.slow  # over 3 s
def test_flow_run_serves_text_gen_from_the_command_line(models_dir, tmp_path):
    env = {**os.environ, "FLOW_MODELS_DIR": str(models_dir), "FLOW_OLLAMA_URL": "", "FLOW_OUTPUT_DIR": str(tmp_path),
           "FLOW_MODEL_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "text_gen", "-p", "prompt=hello",
                           "-p", f"model={TINY}", "-p", "max_tokens=6", "-p", "seed=3", "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["seeds"] == {"gen": 3} and body["outputs"]["usage"]["backend"] == "transformers"
