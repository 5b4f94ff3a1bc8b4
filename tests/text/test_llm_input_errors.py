"""Text-node inputs found unusable while running fail as InvalidInput or InvalidModelRef (4xx), never as a bare
exception (500); answers holding NaN or Infinity are invalid JSON and never become outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_tiny import TINY, TINY_VISION
from zoo import link

from engine import InvalidInput, NodeError, Workflow
from engine.errors import InvalidModelRef
from nodes.llm.ports import parse_answer

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def failure(engine, workflow, params=None) -> NodeError:
    with pytest.raises(NodeError) as caught:
        engine.run_sync(workflow, params)
    return caught.value


@pytest.mark.parametrize("model", ["openai:../x", "openai:a/../b", "hf:../etc", "ollama:bad name", "bogus:x"])
@pytest.mark.parametrize("workflow", ["text_gen", "text_eval", "text_edit"])
def test_llm_input_errors_malformed_model_by_param_is_invalid_model_ref(make_engine, make_manager, workflow, model):
    params = {"text_gen": {"prompt": "hi"}, "text_eval": {"text": "hi"},
              "text_edit": {"text": "hi", "instruction": "fix it"}}[workflow]
    failed = failure(make_engine(make_manager()), Workflow.load(WORKFLOWS / f"{workflow}.json"),
                     {**params, "model": model})
    assert isinstance(failed.cause, InvalidModelRef), repr(failed.cause)


@pytest.mark.parametrize(("node_type", "inputs", "input_", "words"), [
    ("text.generate", {"prompt": "hi", "max_tokens": 2048, "model": TINY}, "max_tokens", "exceeds the context"),
    ("text.describe_image", {"image": link("img", "image"), "model": TINY}, "model", "as a vision model"),
    ("text.evaluate", {"text": "x", "model": TINY_VISION}, "model", ""),
])
def test_llm_input_errors_model_cannot_serve_the_request(run_node, node_type, inputs, input_, words):
    with pytest.raises(NodeError) as caught:
        run_node(node_type, inputs, extra={"img": ("testing.solid_image", {})})
    cause = caught.value.cause
    assert caught.value.node == "n" and isinstance(cause, InvalidInput), repr(cause)
    assert cause.input == input_ and words in str(cause)


@pytest.mark.parametrize("size", [(1, 1), (1, 300)])
def test_llm_input_errors_describe_image_of_a_tiny_picture(run_node, size):
    inputs = {"image": link("img", "image"), "model": TINY_VISION, "max_tokens": 4, "seed": 1}
    try:
        out, _ = run_node("text.describe_image", inputs,
                          extra={"img": ("testing.solid_image", {"width": size[0], "height": size[1]})})
    except NodeError as failed:
        assert isinstance(failed.cause, InvalidInput) and failed.cause.input == "image", repr(failed.cause)
    else:
        assert isinstance(out["text"], str)


@pytest.mark.parametrize("answer", ['{"overall": NaN}', '{"overall": Infinity}', '[-Infinity]', '{"overall": 1e400}',
                                    "[" * 200 + "]" * 200, "[" * 100_000, "1" * 5000])
def test_llm_input_errors_answer_with_nan_infinity_or_absurd_shape_is_not_json(answer):
    value, problem = parse_answer(answer, None)
    assert value is None and "not JSON" in problem
