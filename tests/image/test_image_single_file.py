"""Single-file checkpoints: a tiny SD pipeline written in the original (LDM / A1111) one-file layout is listed
with its family, loads offline through diffusers' single-file path, and makes the same pixels as the diffusers
folder it came from; pickle checkpoints and files that are no checkpoint are refused clearly."""

from __future__ import annotations

import base64
import json
import shutil

import pytest
from click.testing import CliRunner
from image_helpers import INPAINT, TINY, gen_doc, pixels, png_bytes
from ldm_layout import write_single_file

from engine import Workflow


@pytest.fixture(scope="module")
def single_root(tmp_path_factory, models_dir):
    """A models folder whose local root holds checkpoints/tiny.safetensors (+ its .config folder), written from
    the session's tiny diffusers folder, plus a pickle checkpoint and a safetensors file that is no model."""
    from safetensors.torch import save_file
    import torch

    root = tmp_path_factory.mktemp("single-file-models")
    folder = root / "local" / "checkpoints"
    folder.mkdir(parents=True)
    write_single_file(models_dir / "local" / TINY, folder / "tiny.safetensors")
    write_single_file(models_dir / "local" / TINY, folder / "bare.safetensors", with_config=False)
    # an inpainting fine-tune (9-channel UNet) beside the 4-channel configs of its family: flow widens the UNet
    write_single_file(models_dir / "local" / INPAINT, folder / "inpaint.safetensors", with_config=False)
    shutil.copytree(models_dir / "local" / TINY, folder / "inpaint.config",
                    ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "old.ckpt").write_bytes(b"\x80\x04not really a pickle")
    save_file({"weight": torch.zeros(2, 2)}, str(folder / "other.safetensors"))
    return root


@pytest.fixture
def single_engine(make_engine, single_root, models_dir):
    from engine.models import ModelManager, ModelStore

    store = ModelStore(single_root, roots=[models_dir / "local"])
    return make_engine(cache=False, models=ModelManager(store, device="cpu", gpu_budget=1 << 30,
                                                        cpu_budget=1 << 30))


def _generate(engine, model):
    return engine.run_sync(Workflow.from_dict(gen_doc(model=model, seed=11))).outputs["images"]


def test_single_file_checkpoint_makes_the_same_pixels_as_its_diffusers_folder(single_engine):
    import numpy as np

    from_file = _generate(single_engine, "checkpoints/tiny.safetensors")
    from_folder = _generate(single_engine, TINY)
    # The same weights (the conversion is exact), the same configs, the same seed: the same pixels,
    # but for rounding: tensors of another memory layout (the converted ones) can take another CPU
    # kernel, whose summation order flips a value at the edge of a level (seen on some machines:
    # 2 values of 12,288 off by one). A wrong conversion changes the picture, not a level here and there.
    a, b = pixels(from_file).astype(int), pixels(from_folder).astype(int)
    assert np.abs(a - b).max() <= 1 and np.count_nonzero(a != b) <= a.size // 1000
    assert from_file.params[0]["model"] == "checkpoints/tiny.safetensors"


def test_single_file_inpainting_checkpoint_inpaints_like_its_folder(single_engine):
    import numpy as np
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (64, 64), (200, 40, 40))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((32, 32, 63, 63), fill=255)

    def url(image):
        return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()

    def edit(model):
        doc = {"nodes": {
            "load": {"type": "image.load", "inputs": {"data": url(picture)}},
            "mask": {"type": "image.load", "inputs": {"data": url(mask), "mask_from": "luminance"}},
            "edit": {"type": "image.edit", "inputs": {
                "image": {"from": "load", "output": "image"}, "mask": {"from": "mask", "output": "mask"},
                "prompt": "a dog", "steps": 2, "strength": 1.0, "seed": 3, "model": model}}},
            "outputs": {"image": {"from": "edit", "output": "image"}}}
        return single_engine.run_sync(Workflow.from_dict(doc)).outputs["image"]

    from_file = edit("checkpoints/inpaint.safetensors")
    assert from_file.params[0]["task"] == "inpaint"
    assert np.array_equal(pixels(from_file), pixels(edit(INPAINT)))


def test_single_files_are_listed_with_their_family(single_root, models_dir, monkeypatch):
    from cli import main
    from engine.models import ModelStore

    listed = {m.ref.split("/local/")[-1]: m for m in ModelStore(single_root).list()}
    assert listed["checkpoints/tiny.safetensors"].to_json()["family"] == "sd1"
    assert listed["checkpoints/tiny.safetensors"].kind == "image"
    assert listed["checkpoints/inpaint.safetensors"].family == "sd1-inpaint"
    assert listed["checkpoints/other.safetensors"].kind is None  # a safetensors file, not a checkpoint
    assert not any(ref.endswith(".config") or ref.endswith(".ckpt") for ref in listed)
    monkeypatch.setenv("FLOW_MODELS_DIR", str(single_root))
    shown = CliRunner().invoke(main, ["models", "--json"])
    assert shown.exit_code == 0, shown.output
    families = {m["ref"].split("/local/")[-1]: m.get("family") for m in json.loads(shown.stdout)}
    assert families["checkpoints/tiny.safetensors"] == "sd1"
    text = CliRunner().invoke(main, ["models"])
    assert "tiny.safetensors" in text.output and "[sd1]" in text.output


@pytest.mark.parametrize("model, words", [
    ("checkpoints/old.ckpt", "pickle checkpoint"),
    ("checkpoints/other.safetensors", "not a checkpoint flow can load"),
    # no .config folder beside it: the shipped SD 1.x configs (a real model's sizes) do not fit the tiny weights
    ("checkpoints/bare.safetensors", "cannot be loaded as a SD 1.x checkpoint"),
])
def test_single_file_refusals_say_what_to_do(single_engine, model, words):
    from engine.errors import FlowError

    with pytest.raises(FlowError, match=words) as caught:
        _generate(single_engine, model)
    assert 400 <= getattr(caught.value, "status", 500) < 500


def test_shipped_configs_describe_the_real_architectures():
    """The offline configs build models with the published parameter counts (on the meta device, no weights)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from nodes.image.checkpoints import CONFIGS

    def count(model):
        return sum(p.numel() for p in model.parameters())

    expected = {"sd1": (859_520_964, 123_060_480), "sd2": (865_910_724, 340_387_840),
                "sdxl": (2_567_463_684, 123_060_480)}
    for family, (unet_params, text_params) in expected.items():
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS / family / "unet"))
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / family / "vae"))
            text = CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / family / "text_encoder"))
            assert (count(unet), count(vae), count(text)) == (unet_params, 83_653_863, text_params), family
            if family == "sdxl":
                big = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(CONFIGS / family / "text_encoder_2"))
                assert count(big) == 694_659_840


def test_the_shipped_clip_tokenizer_is_openai_clips():
    """The vocabulary every SD checkpoint needs and none contains: the ids the hub's CLIP tokenizer gives."""
    from transformers import CLIPTokenizer

    from nodes.image.checkpoints import CLIP_TOKENIZER

    tokenizer = CLIPTokenizer.from_pretrained(str(CLIP_TOKENIZER), pad_token="<|endoftext|>", model_max_length=77)
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
