"""The in-process transformers backend on the tiny Llama model, loaded by reference through the store."""

from __future__ import annotations

import difflib

import pytest
from llm_tiny import TINY, TINY_VISION
from zoo import Recorder, link

from engine import NodeError
from engine.errors import InvalidModelRef


def test_generate_same_seed_same_text_through_the_manager(run_node, make_manager):
    manager = make_manager()
    inputs = dict(prompt="write about the river", model=TINY, max_tokens=24, seed=7)
    first, _ = run_node("text.generate", inputs, manager)
    second, _ = run_node("text.generate", inputs, manager)
    assert first["text"] == second["text"] and first["text"]
    usage = first["usage"]
    assert usage["backend"] == "transformers" and usage["model"].endswith(TINY)
    assert usage["prompt_tokens"] > 5 and 1 <= usage["completion_tokens"] <= 24
    assert 0 <= usage["first_token_s"] <= usage["total_s"]
    # One load, then the leased model is reused.
    assert manager.counters.loads == 1 and [m.ref for m in manager.loaded()] == [usage["model"]]


def test_generate_seed_changes_text_and_greedy_ignores_it(run_node, make_manager):
    manager = make_manager()
    sampled = {run_node("text.generate", dict(prompt="a poem", model=TINY, max_tokens=16, seed=s), manager)[0]["text"]
               for s in (1, 2, 3)}
    assert len(sampled) > 1
    greedy = {run_node("text.generate", dict(prompt="a poem", model=TINY, max_tokens=16, seed=s, temperature=0),
                       manager)[0]["text"] for s in (1, 2)}
    assert len(greedy) == 1


def test_generate_matches_the_model_called_directly(run_node, generator):
    out, result = run_node("text.generate", dict(prompt="hello world", system="be brief", model=TINY, max_tokens=20,
                                                 seed=11, temperature=0.9, top_p=0.95))
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]
    _, pieces, count = generator.pieces(messages, max_tokens=20, temperature=0.9, top_p=0.95, seed=11)
    assert out["text"] == "".join(pieces)
    assert out["usage"]["completion_tokens"] >= count
    assert result.seeds == {"n": 11}


def test_generate_streams_tokens_as_progress(run_node):
    events = Recorder()
    out, _ = run_node("text.generate", dict(prompt="tell a story", model=TINY, max_tokens=40, seed=5), listener=events)
    progress = [e for e in events if e.kind == "node.progress"]
    assert progress and all(e.total == 40 for e in progress)
    assert "".join(e.message for e in progress) == out["text"]
    assert [e.done for e in progress] == sorted(e.done for e in progress)


def test_generate_stop_string_ends_the_answer(run_node, make_manager):
    manager = make_manager()
    base = dict(prompt="tell a story", model=TINY, max_tokens=40, seed=5)
    full = run_node("text.generate", base, manager)[0]["text"]
    assert len(full) > 6
    stop = full[len(full) // 2: len(full) // 2 + 2]
    cut = run_node("text.generate", {**base, "stop": [stop]}, manager)[0]
    assert cut["text"] == full[: full.index(stop)]
    assert cut["usage"]["done_reason"] == "stop"


def test_generate_with_context_puts_the_json_in_the_prompt(run_node, make_manager):
    manager = make_manager()
    plain = run_node("text.generate", dict(prompt="hi", model=TINY, max_tokens=4, seed=1), manager)[0]
    with_context = run_node("text.generate", dict(prompt="hi", model=TINY, max_tokens=4, seed=1,
                                                  context={"user": "Ada", "plan": "pro"}), manager)[0]
    assert with_context["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"] + 10


def test_generate_prompt_beyond_the_context_window_is_a_clear_error(run_node):
    with pytest.raises(NodeError, match=r"exceeds the context of .*tiny-llm \(2048 tokens\)"):
        run_node("text.generate", dict(prompt="hi", model=TINY, max_tokens=4000, seed=1))


def test_chat_appends_the_reply(run_node):
    messages = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                {"role": "user", "content": "tell me more"}]
    out, _ = run_node("text.chat", dict(messages=messages, model=TINY, max_tokens=12, seed=3))
    assert out["messages"] == [*messages, {"role": "assistant", "content": out["reply"]}]
    assert out["usage"]["backend"] == "transformers"


def test_edit_returns_the_text_and_its_unified_diff(run_node):
    text = "the fox jumps\nover the dog\n"
    out, _ = run_node("text.edit", dict(text=text, instruction="make it formal", model=TINY, max_tokens=16, seed=9))
    edited = out["text"]
    assert edited.endswith("\n")
    expected = "\n".join(difflib.unified_diff(text.splitlines(), edited.splitlines(), "original", "edited",
                                              lineterm=""))
    assert out["diff"].rstrip("\n") == expected and out["diff"].startswith("--- original\n+++ edited\n")


def test_embed_gives_one_normalised_vector_per_text(run_node, make_manager):
    manager = make_manager()
    out, _ = run_node("text.embed", dict(texts=["a red fox", "a lazy dog", "a red fox"], model=TINY), manager)
    vectors = out["vectors"]
    assert out["dimensions"] == 32 and len(vectors) == 3
    assert all(abs(sum(x * x for x in v) - 1) < 1e-4 for v in vectors)
    assert vectors[0] == pytest.approx(vectors[2]) and vectors[0] != pytest.approx(vectors[1])
    single, _ = run_node("text.embed", dict(texts="a red fox", model=TINY), manager)
    assert single["vectors"][0] == pytest.approx(vectors[0], abs=1e-5)


def test_describe_image_runs_a_vision_model_in_process(run_node, make_manager):
    manager = make_manager()
    inputs = dict(image=link("img", "image"), prompt="Describe this image.", model=TINY_VISION, max_tokens=8, seed=4)
    extra = {"img": ("testing.solid_image", {"width": 40, "height": 30})}
    first, _ = run_node("text.describe_image", inputs, manager, extra=extra)
    again, _ = run_node("text.describe_image", inputs, manager, extra=extra)
    assert first["text"] == again["text"] and first["usage"]["backend"] == "transformers"
    # 16 image tokens (32x32 pixels in 8x8 patches) stand in for the one <image> placeholder of the prompt.
    assert first["usage"]["prompt_tokens"] > 16
    assert [(m.variant, m.ref.endswith(TINY_VISION)) for m in manager.loaded()] == [("vision", True)]


def test_a_chat_model_cannot_describe_images(run_node):
    with pytest.raises(NodeError, match=r"cannot load .*tiny-llm as a vision model"):
        run_node("text.describe_image", dict(image=link("img", "image"), model=TINY, seed=1),
                 extra={"img": ("testing.solid_image", {})})


def test_missing_hf_model_names_the_pull_command(run_node):
    with pytest.raises(NodeError, match=r"flow pull hf:nobody/nothing"):
        run_node("text.generate", dict(prompt="hi", model="hf:nobody/nothing", seed=1))


def test_unknown_local_folder_is_an_invalid_reference(run_node):
    with pytest.raises(NodeError, match="no model folder 'not-there'") as info:
        run_node("text.generate", dict(prompt="hi", model="not-there", seed=1))
    assert isinstance(info.value.cause, InvalidModelRef)


def test_default_model_without_ollama_is_the_small_in_process_one(run_node):
    with pytest.raises(NodeError, match=r"hf:Qwen/Qwen2.5-0.5B-Instruct.*flow pull"):
        run_node("text.generate", dict(prompt="hi", seed=1))


def test_cancelling_the_job_stops_generation(make_engine, make_manager):
    from zoo import G

    from engine import Cancelled, CancelToken
    from nodes.llm.hf_backend import _cancel_criteria

    manager = make_manager()
    engine = make_engine(manager)
    token = CancelToken()

    def cancel_on_first_token(event):
        if event.kind == "node.progress":
            token.cancel()

    workflow = G().node("n", "text.generate", prompt="go on", model=TINY, max_tokens=1500, seed=2).build()
    with pytest.raises(Cancelled):
        engine.run_sync(workflow, listener=cancel_on_first_token, cancel=token)

    class Ctx:
        cancelled = False

    import torch

    criteria = _cancel_criteria(Ctx)
    assert not criteria(torch.zeros((1, 3), dtype=torch.long), None).item()
    Ctx.cancelled = True
    assert criteria(torch.zeros((1, 3), dtype=torch.long), None).item()
