"""LoRA on the image nodes: a tiny LoRA made with PEFT on the tiny UNet changes the output, reproducibly by seed and
weight, switches off again without reloading the model, and is recorded in the saved file (A1111 <lora:...>)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from image_helpers import TINY, gen_doc, pixels

from engine import Workflow

LORA = "loras/tiny_lora.safetensors"


@pytest.fixture(scope="module")
def lora_root(tmp_path_factory, models_dir):
    """A models folder whose local root holds loras/tiny_lora.safetensors (PEFT on the tiny UNet, random B)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    root = tmp_path_factory.mktemp("lora-models")
    unet = UNet2DConditionModel.from_pretrained(models_dir / "local" / TINY / "unet")
    torch.manual_seed(0)
    # init_lora_weights=False: B is random too, so the LoRA changes the output (a fresh LoRA is a no-op)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    StableDiffusionPipeline.save_lora_weights(root / "local" / "loras",
                                              unet_lora_layers=get_peft_model_state_dict(unet),
                                              weight_name="tiny_lora.safetensors")
    return root


@pytest.fixture
def lora_engine(make_engine, lora_root, models_dir):
    from engine.models import ModelManager, ModelStore

    store = ModelStore(lora_root, roots=[models_dir / "local"])
    return make_engine(cache=True, models=ModelManager(store, device="cpu", gpu_budget=1 << 30, cpu_budget=1 << 30))


def _run(engine, loras=None, seed=7, save=False):
    doc = gen_doc(seed=seed, **({"loras": loras} if loras is not None else {}))
    if save:
        doc["nodes"]["save"] = {"type": "image.save", "inputs": {"images": {"from": "gen", "output": "images"},
                                                                  "prefix": "image/lora"}}
        doc["outputs"]["file"] = {"from": "save", "output": "path"}
    return engine.run_sync(Workflow.from_dict(doc))


def test_lora_changes_the_output_reproducibly_by_seed_and_weight(lora_engine, make_engine, lora_root, models_dir):
    from engine.models import ModelManager, ModelStore

    plain = pixels(_run(lora_engine).outputs["images"])
    full = pixels(_run(lora_engine, [{"path": LORA, "weight": 1.0}]).outputs["images"])
    half = pixels(_run(lora_engine, [{"path": LORA, "weight": 0.5}]).outputs["images"])
    assert not np.array_equal(plain, full) and not np.array_equal(full, half)
    # off again: the base model's own pixels, without a reload (one load for every run)
    again = _run(lora_engine, [], seed=7)
    assert np.array_equal(pixels(again.outputs["images"]), plain)
    assert lora_engine.models.report().counters.loads == 1
    # a fresh engine (no output cache, a new load) makes the same pixels for the same seed and weight
    fresh = make_engine(cache=False, models=ModelManager(ModelStore(lora_root, roots=[models_dir / "local"]),
                                                         device="cpu", gpu_budget=1 << 30, cpu_budget=1 << 30))
    assert np.array_equal(pixels(_run(fresh, [{"ref": LORA, "weight": 0.5}]).outputs["images"]), half)
    assert np.array_equal(pixels(_run(fresh, [{"path": LORA, "weight": 1.0}]).outputs["images"]), full)


def test_lora_is_part_of_the_cache_key_and_the_saved_parameters(lora_engine):
    from engine.embedded import PARAMETERS_KEY, png_text

    first = _run(lora_engine, [{"path": LORA, "weight": 0.8}], save=True)
    other = _run(lora_engine, [{"path": LORA, "weight": 0.9}])
    assert "gen" in first.executed and "gen" in other.executed  # another weight is another key: it ran
    same = _run(lora_engine, [{"path": LORA, "weight": 0.8}])
    assert "gen" in same.cached
    entries = png_text(first.outputs["file"])
    assert json.loads(entries[PARAMETERS_KEY])["loras"] == [{"path": LORA, "weight": 0.8}]
    assert entries["parameters"].splitlines()[0] == "a red cat <lora:tiny_lora:0.8>"


@pytest.mark.parametrize("loras, words", [
    ([{"path": "loras/missing.safetensors", "weight": 1}], "no model folder"),
    ([{"path": "../etc/passwd"}], "not a plain relative path"),
    ([{"weight": 1}], "names no LoRA"),
])
def test_lora_bad_references_are_refused_clearly(lora_engine, loras, words):
    from engine.errors import FlowError

    with pytest.raises(FlowError, match=words) as caught:
        _run(lora_engine, loras)
    assert 400 <= getattr(caught.value, "status", 500) < 500
