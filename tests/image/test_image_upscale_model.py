"""image.upscale with a model: diffusers' x4 upscaler and x2 latent upscaler, tiny ones built offline from configs."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import numpy as np
import pytest
from image_helpers import TINY, gen_doc, pixels

from engine import Cancelled, CancelToken, NodeError, Workflow

ROOT = Path(__file__).resolve().parents[2]
X4 = "tiny-sd-x4-upscaler"  # StableDiffusionUpscalePipeline: 7-channel UNet (4 latent + 3 image), VAE factor 4
X2 = "tiny-sd-x2-latent-upscaler"  # StableDiffusionLatentUpscalePipeline: 8 in, 5 out, timestep condition


def _text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def _unet(in_channels: int, out_channels: int, **extra):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=in_channels,
        out_channels=out_channels, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=4,
        attention_head_dim=2, **extra)


def _vae(blocks: int, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16)[:blocks], in_channels=3, out_channels=3, latent_channels=4,
        norm_num_groups=4, layers_per_block=1, sample_size=32, down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks, **extra)


def tiny_x4_upscaler(folder: Path) -> Path:
    """The x4 upscaler's layout at ~1 MB: the image joins the latents at full size, the VAE decodes them 4x."""
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline
    from tiny import clip_tokenizer

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(folder.parent / f".{folder.name}-tokenizer")
    pipe = StableDiffusionUpscalePipeline(
        vae=_vae(3, scaling_factor=0.08333), text_encoder=_text_encoder(tokenizer), tokenizer=tokenizer,
        unet=_unet(7, 4, num_class_embeds=400),  # the noise level enters as a class label (at most 350)
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350)
    pipe.save_pretrained(folder)
    return folder


def tiny_x2_latent_upscaler(folder: Path) -> Path:
    """The x2 latent upscaler's layout: 4 latent + 4 image channels in, 5 out, noise level + pooled text condition."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionLatentUpscalePipeline
    from tiny import clip_tokenizer

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(folder.parent / f".{folder.name}-tokenizer")
    pipe = StableDiffusionLatentUpscalePipeline(
        vae=_vae(4), text_encoder=_text_encoder(tokenizer), tokenizer=tokenizer,
        unet=_unet(8, 5, time_cond_proj_dim=128 + 32), scheduler=EulerDiscreteScheduler())
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def upscalers(models_dir):
    """The two tiny upscalers beside the tiny SD models (one models root: the hires workflow uses both)."""
    for name, build in ((X4, tiny_x4_upscaler), (X2, tiny_x2_latent_upscaler)):
        if not (models_dir / "local" / name / "model_index.json").exists():
            build(models_dir / "local" / name)


def _picture(size=(64, 48), seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _doc(picture, **inputs):
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    data = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    body = {"images": {"from": "load", "output": "image"}, "steps": 2, "prompt": "a cat", **inputs}
    return {"nodes": {"load": {"type": "image.load", "inputs": {"data": data}},
                      "up": {"type": "image.upscale", "inputs": body}},
            "outputs": {"images": {"from": "up", "output": "images"}}}


def _run(engine, picture, **inputs):
    return engine.run_sync(Workflow.from_dict(_doc(picture, **inputs))).outputs["images"]


@pytest.mark.parametrize("model, factor", [(X4, 4), (X2, 2)])
def test_upscale_model_makes_its_size_and_is_reproducible_by_seed(make_engine, model, factor):
    from PIL import Image

    engine = make_engine(cache=False)  # every run really runs the model
    picture = _picture()
    out = _run(engine, picture, model=model, scale=factor, seed=3)
    assert out.size == (64 * factor, 48 * factor)
    assert out.params[0]["upscale"]["model"] == model and out.params[0]["upscale"]["factor"] == factor
    assert out.params[0]["upscale"]["seed"] == 3 and out.recipes[0]["nodes"]["up"]["inputs"]["model"] == model
    again = _run(engine, picture, model=model, scale=factor, seed=3)
    other = _run(engine, picture, model=model, scale=factor, seed=4)
    assert np.array_equal(pixels(out), pixels(again))
    assert not np.array_equal(pixels(out), pixels(other))
    # the model made these pixels, not the resampling
    lanczos = picture.resize(out.size, Image.Resampling.LANCZOS)
    assert not np.array_equal(pixels(out), np.asarray(lanczos))


def test_upscale_model_result_is_resampled_to_the_asked_scale(image_engine):
    out = _run(image_engine, _picture((70, 50)), model=X4, scale=1.5, noise_level=50, guidance=2.0)
    # the x4 model makes 272x200 (sides rounded down to its VAE's multiple of 4), then 105x75 -> multiples of 8
    assert out.size == (104, 72)
    assert out.params[0]["upscale"]["noise_level"] == 50 and out.params[0]["upscale"]["guidance"] == 2.0


def test_upscale_model_reports_progress_per_step(image_engine, events):
    image_engine.run_sync(Workflow.from_dict(_doc(_picture(), model=X4, steps=3)), listener=events)
    steps = [(e.done, e.total) for e in events if e.kind == "node.progress" and e.message == "upscaling"]
    assert steps == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("node, message", [
    ("up", "is a StableDiffusionPipeline, not an upscale model"),
    ("gen", "is an upscale model; give it to image.upscale"),
])
def test_upscale_model_of_the_wrong_kind_is_a_4xx_naming_the_input(image_engine, node, message):
    doc = _doc(_picture(), model=TINY) if node == "up" else gen_doc(model=X4)
    with pytest.raises(NodeError, match=message) as caught:
        image_engine.run_sync(Workflow.from_dict(doc))
    assert caught.value.status == 422 and caught.value.cause.input == "model"


def test_upscale_model_refuses_a_result_over_the_pixel_limit(image_engine):
    # 1100x1100 x 4 = 4400x4400 from the model, though the asked scale (1) would fit
    with pytest.raises(NodeError, match="the model's factor") as caught:
        _run(image_engine, _picture((1100, 1100)), model=X4, scale=1)
    assert caught.value.status == 422


def test_upscale_model_cancel_stops_between_steps_and_frees_the_model(image_engine, manager, events):
    from nodes.image.pipes import VARIANT, loader

    with manager.lease(X4, loader("cpu"), variant=VARIANT) as pipes:
        pass
    token, calls = CancelToken(), []

    def pre(module, args):
        calls.append(1)
        if len(calls) == 2:
            token.cancel("stopped by the test")

    handle = pipes.base.unet.register_forward_pre_hook(pre)
    try:
        with pytest.raises(Cancelled):
            image_engine.run_sync(Workflow.from_dict(_doc(_picture(), model=X4, steps=20)), cancel=token,
                                  listener=events)
        deadline = time.monotonic() + 30
        while manager.loaded()[0].pinned and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        handle.remove()
    assert manager.loaded()[0].pinned == 0
    assert len(calls) == 2  # the step in flight finished; no further step started
    assert "job.cancelled" in events.kinds() and "job.finished" not in events.kinds()


def test_image_hires_workflow_with_an_upscale_model(image_engine):
    workflow = Workflow.load(ROOT / "workflows" / "image_hires.json")
    params = {"prompt": "a castle", "model": TINY, "upscale_model": X2, "width": 64, "height": 64, "steps": 2,
              "seed": 5}
    result = image_engine.run_sync(workflow, params)
    assert pixels(result.outputs["file"]).shape == (128, 128, 3)
    upscale = result.outputs["files"].recipes[0]["nodes"]["up"]["inputs"]
    assert upscale["model"] == X2 and upscale["prompt"] == "a castle" and upscale["seed"] == 0
