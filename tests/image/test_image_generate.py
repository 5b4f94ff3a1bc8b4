"""image.generate on a tiny Stable Diffusion built offline and loaded by reference through the model store."""

from __future__ import annotations

import numpy as np
import pytest
from image_helpers import INPAINT, TINY, gen_doc, pixels

from engine import InvalidWorkflow, NodeError, Workflow


def run(engine, doc, params=None, **kw):
    return engine.run_sync(Workflow.from_dict(doc), params, **kw)


def test_generate_makes_images_of_the_asked_size_and_reports_the_seed(image_engine, manager, events):
    result = run(image_engine, gen_doc(width=64, height=96, batch_size=2), listener=events)
    images = result.outputs["images"]
    assert len(images) == 2 and images.size == (64, 96)
    assert all(image.mode == "RGB" for image in images.images)
    assert result.seeds == {"gen": 7}
    assert [p["seed"] for p in images.params] == [7, 8]
    assert images.params[0]["prompt"] == "a red cat" and images.params[0]["model"] == TINY
    assert not np.array_equal(pixels(images.images[0]), pixels(images.images[1]))
    assert manager.counters.loads == 1


def test_generate_same_seed_gives_identical_pixels_and_another_seed_does_not(make_engine):
    first = run(make_engine(cache=False), gen_doc(seed=11)).outputs["images"]
    again = run(make_engine(cache=False), gen_doc(seed=11)).outputs["images"]
    other = run(make_engine(cache=False), gen_doc(seed=12)).outputs["images"]
    assert np.array_equal(pixels(first), pixels(again))
    assert not np.array_equal(pixels(first), pixels(other))


def test_generate_image_i_of_a_batch_is_reproduced_alone_with_seed_plus_i(make_engine):
    batch = run(make_engine(cache=False), gen_doc(seed=20, batch_size=3)).outputs["images"]
    alone = run(make_engine(cache=False), gen_doc(seed=22)).outputs["images"]
    assert np.array_equal(pixels(batch.images[2]), pixels(alone))


@pytest.mark.parametrize("scheduler", ["euler_ancestral", "dpmpp_2m", "ddim"])
def test_generate_named_schedulers_run_and_stay_reproducible(make_engine, scheduler):
    doc = gen_doc(scheduler=scheduler, steps=3, guidance=2.0, negative_prompt="blue")
    first = run(make_engine(cache=False), doc).outputs["images"]
    again = run(make_engine(cache=False), doc).outputs["images"]
    assert np.array_equal(pixels(first), pixels(again))


def test_generate_reports_progress_per_diffusion_step(image_engine, events):
    run(image_engine, gen_doc(steps=3), listener=events)
    steps = [(e.done, e.total) for e in events if e.kind == "node.progress" and e.node == "gen"
             and not (e.message or "").startswith("loading model")]
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_generate_second_identical_request_is_served_from_the_cache_and_loads_nothing(image_engine, manager):
    first = run(image_engine, gen_doc())
    second = run(image_engine, gen_doc())
    assert first.executed == ["gen"] and second.cached == ["gen"] and second.executed == []
    assert np.array_equal(pixels(first.outputs["images"]), pixels(second.outputs["images"]))
    third = run(image_engine, gen_doc(seed=8))  # a new request: runs, but the model is already loaded
    assert third.executed == ["gen"]
    assert manager.counters.loads == 1 and manager.counters.hits == 1


@pytest.mark.parametrize(("inputs", "bad_input", "words"), [
    ({"width": 500}, "width", "multiple of 8"),
    ({"height": 4096}, "height", "maximum"),
    ({"steps": 0}, "steps", "minimum"),
    ({"batch_size": 9}, "batch_size", "maximum"),
    ({"scheduler": "warp"}, "scheduler", "is not one of"),
])
def test_generate_bad_inputs_are_refused_before_anything_runs(image_engine, manager, inputs, bad_input, words):
    with pytest.raises(InvalidWorkflow) as caught:
        run(image_engine, gen_doc(**inputs))
    (problem,) = caught.value.problems
    assert (problem.node, problem.input) == ("gen", bad_input) and words in problem.message
    assert manager.counters.loads == 0


def test_generate_with_an_inpainting_model_says_what_the_model_is_for(image_engine):
    with pytest.raises(NodeError) as caught:
        run(image_engine, gen_doc(model=INPAINT))
    message = str(caught.value)
    assert "'gen' (image.generate)" in message and "inpainting model" in message and "mask" in message


def test_generate_names_a_missing_model_and_how_to_get_it(image_engine):
    with pytest.raises(NodeError, match="no model folder 'no-such-model'"):
        run(image_engine, gen_doc(model="no-such-model"))


def test_generate_reports_the_model_load_as_its_own_progress(make_engine, events):
    run(make_engine(cache=False), gen_doc(), listener=events)  # a fresh engine: the model loads here
    loads = [e for e in events if e.kind == "node.progress" and (e.message or "").startswith("loading model")]
    assert len(loads) == 1 and loads[0].node == "gen"
    first_step = next(i for i, e in enumerate(events) if e.kind == "node.progress" and e.message == "denoising")
    assert events.index(loads[0]) < first_step  # the load is reported before the first step
