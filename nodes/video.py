"""Video nodes: text-to-video through diffusers (Wan 2.1, AnimateDiff), saving, and adding a soundtrack."""

from __future__ import annotations

import json
from pathlib import Path

from engine import AUDIO, FLOAT, INT, TEXT, VIDEO, Input, InvalidInput, Node, Output, Seed
from engine.models import dtype_for, quiet_libraries
from engine.saving import SaveNode, remember_saved

from .avmedia import VIDEO_FORMATS, Audio, Video, write_video

DEFAULT_MODEL = "hf:Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
#: text-to-video pipeline classes this node knows how to call (all take the same arguments)
PIPELINES = ("WanPipeline", "AnimateDiffPipeline", "TextToVideoSDPipeline")


class Generate(Node):
    """Generate a short video from a text prompt with a diffusers text-to-video pipeline."""

    type = "video.generate"
    inputs = {
        "prompt": Input(TEXT, "what the video should show", minLength=1, widget="multiline"),
        "negative_prompt": Input(TEXT, "what the video should not show", default="", widget="multiline"),
        "frames": Input(INT, "number of frames (Wan needs 4k+1: 17, 33, 81; AnimateDiff at most 32)",
                        default=33, minimum=1, maximum=257),
        "fps": Input(FLOAT, "frames per second of the result", default=16.0, exclusiveMinimum=0, maximum=120),
        "width": Input(INT, "width in pixels; the model may ask more as it runs (Wan: a multiple of 16)",
                       default=832, minimum=16, maximum=1920, multipleOf=8),
        "height": Input(INT, "height in pixels; the model may ask more as it runs (Wan: a multiple of 16)",
                        default=480, minimum=16, maximum=1920, multipleOf=8),
        "steps": Input(INT, "denoising steps", default=30, minimum=1, maximum=200),
        "guidance": Input(FLOAT, "classifier-free guidance scale (1 or less turns it off)", default=5.0,
                          minimum=0, maximum=30),
        "seed": Seed(),
        "model": Input(TEXT, "text-to-video model (Wan 2.1 or AnimateDiff, diffusers layout): hf:ORG/NAME[@REV] "
                             "or a local folder", default=DEFAULT_MODEL, minLength=1, widget="model"),
    }
    outputs = {"video": Output(VIDEO, "the generated frames and their frame rate")}

    def run(self, ctx, prompt, negative_prompt, frames, fps, width, height, steps, guidance, seed, model):
        manager = ctx.require_models()
        dtype_name = dtype_for(manager.device)

        attempts = []

        def work(pipe):
            _check_shape(ctx, pipe, frames, width, height)
            if attempts:
                # The manager retries after running out of memory; its lower-memory modes are
                # pipeline switches, and Wan's pipeline has none for its VAE: tile the VAE here.
                _tile_vae(ctx, pipe)
            attempts.append(True)
            return _generate(ctx, pipe, prompt, negative_prompt, frames, width, height, steps, guidance, seed)

        pixels = manager.run(model, lambda path: _load(path, dtype_name), work, variant=f"t2v-{dtype_name}",
                             progress=ctx.model_progress)
        params = {"node": self.type, "model": model, "prompt": prompt, "negative_prompt": negative_prompt,
                  "frames": frames, "fps": fps, "width": width, "height": height, "steps": steps,
                  "guidance": guidance, "seed": seed}
        return {"video": Video(pixels, float(fps), None, params)}


class Save(SaveNode):
    """Save a video as H.264 MP4 (with its soundtrack), GIF or animated WebP, with how it was made stored in it."""

    type = "video.save"
    inputs = {
        "video": Input(VIDEO, "the video to save"),
        "format": Input(TEXT, "file type (GIF and WebP carry no sound)", default="mp4", enum=list(VIDEO_FORMATS)),
        **SaveNode.common_inputs("video/clip", "in the container's metadata"),
    }

    def run(self, ctx, video, format, prefix, metadata):
        description = self.description(ctx, getattr(video, "params", {}), metadata)
        saved = self.save(ctx, prefix, f".{format}", description, lambda path, d: write_video(path, video, format, d))
        remember_saved(ctx, video, saved["path"])  # the faces show this file for `video`, no copy
        return saved


class Mux(Node):
    """Put an audio track into a video, trimmed or padded with silence to the video's length."""

    type = "video.mux"
    inputs = {
        "video": Input(VIDEO, "the video (its own soundtrack, if any, is replaced)"),
        "audio": Input(AUDIO, "the soundtrack"),
        "volume": Input(FLOAT, "gain applied to the soundtrack (1 keeps it as is)", default=1.0, minimum=0, maximum=8),
        "fade_out": Input(FLOAT, "seconds of fade-out at the end (0 for none)", default=0.0, minimum=0, maximum=30),
    }
    outputs = {"video": Output(VIDEO, "the video with the soundtrack")}

    def run(self, ctx, video, audio, volume, fade_out):
        import numpy as np

        # AUDIO values are read by their documented fields only: samples (channels, n) and sample_rate.
        samples = np.asarray(audio.samples, np.float32)
        track = Audio(samples, int(audio.sample_rate)).fitted(video.duration)
        samples = track.samples * np.float32(volume)
        fade = min(round(fade_out * track.sample_rate), samples.shape[1])
        if fade:
            samples[:, -fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        soundtrack = Audio(np.clip(samples, -1.0, 1.0), track.sample_rate, dict(getattr(audio, "params", {})))
        params = {**video.params, "soundtrack": {**soundtrack.params, "volume": volume, "fade_out": fade_out}}
        return {"video": Video(video.frames, video.fps, soundtrack, params)}


def _load(path: Path, dtype_name: str):
    """Load a text-to-video pipeline from a local folder on the CPU (safetensors only, no remote code)."""
    import torch
    from diffusers import DiffusionPipeline

    quiet_libraries("diffusers", "transformers")

    index = path / "model_index.json"
    kind = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    if kind not in PIPELINES:
        raise InvalidInput("model", f"{path.name} is not a text-to-video pipeline "
                                    f"({kind or 'no model_index.json'}); use one of {', '.join(PIPELINES)}, "
                                    f"e.g. {DEFAULT_MODEL}")
    dtype = getattr(torch, dtype_name)
    extra = {}
    # The model manager runs loaders one at a time (from_pretrained is not thread-safe).
    if kind == "WanPipeline" and dtype != torch.float32:
        # Wan's VAE overflows in half precision: keep it in float32 (the pipeline casts latents to it).
        from diffusers import AutoencoderKLWan

        extra["vae"] = AutoencoderKLWan.from_pretrained(path, subfolder="vae", dtype=torch.float32,
                                                        use_safetensors=True)
    pipe = DiffusionPipeline.from_pretrained(path, dtype=dtype, use_safetensors=True, **extra)
    pipe.set_progress_bar_config(disable=True)  # progress goes through the engine's events instead
    return pipe


def _check_shape(ctx, pipe, frames: int, width: int, height: int) -> None:
    """Refuse frame counts and sizes the loaded pipeline cannot make, saying which would work."""
    name = type(pipe).__name__
    where = f"{ctx.node_type} ({name})"
    if name == "WanPipeline":
        step = pipe.vae_scale_factor_temporal
        if (frames - 1) % step:
            below = (frames - 1) // step * step + 1
            raise InvalidInput("frames", f"{where}: frames must be {step}k+1, got {frames}; use {below} or {below + step}")
        multiple = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
    else:
        limit = getattr(getattr(pipe, "unet", None), "config", {}).get("motion_max_seq_length")
        if limit and frames > limit:
            raise InvalidInput("frames", f"{where}: this motion module makes at most {limit} frames, got {frames}; "
                                         f"use {limit} or fewer")
        multiple = pipe.vae_scale_factor
    for label, value in (("width", width), ("height", height)):
        if value % multiple:
            raise InvalidInput(label, f"{where}: {label} must be a multiple of {multiple}, got {value}; "
                                      f"use {value // multiple * multiple or multiple}")


def _tile_vae(ctx, pipe) -> None:
    """Decode in tiles (less memory, nearly the same pixels) where the VAE supports it."""
    vae = getattr(pipe, "vae", None)
    if callable(getattr(vae, "enable_tiling", None)) and not getattr(vae, "use_tiling", False):
        vae.enable_tiling()
        ctx.log.warning("out of memory: switched on VAE tiling for %s", type(pipe).__name__)


def _generate(ctx, pipe, prompt, negative_prompt, frames, width, height, steps, guidance, seed):
    """Run the pipeline (progress per step, cancellable); returns uint8 frames (T, H, W, 3)."""
    import numpy as np
    import torch

    def on_step(pipeline, index, timestep, tensors):
        ctx.check_cancelled()
        ctx.progress(index + 1, steps, "steps")
        return tensors

    # A CPU generator: the same seed gives the same latents on every device.
    generator = torch.Generator("cpu").manual_seed(seed)
    with ctx.gpu(), torch.inference_mode():
        out = pipe(prompt=prompt, negative_prompt=negative_prompt or None, num_frames=frames, width=width,
                   height=height, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                   output_type="np", callback_on_step_end=on_step)
    video = np.asarray(out.frames[0], dtype=np.float32)  # (T, H, W, 3) in [0, 1]
    return (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)
