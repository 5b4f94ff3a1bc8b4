"""The diffusers backend: one loaded model per reference, task pipelines derived from it, and a run.

A model is loaded once (`DiffusionPipeline.from_pretrained`, the class its `model_index.json`
names) and wrapped in :class:`PipeSet`, which the model manager leases, measures, moves and
switches to lower-memory modes. Text-to-image, image-to-image, inpainting and instruction
edits are derived from the same weights with `from_pipe` (no copy), so every image node shares
one load. diffusers and torch are imported inside the functions that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from engine import InvalidInput
from engine.models import dtype_for, quiet_libraries

#: the manager's cache key for this loader (reference + variant): image nodes share one load
VARIANT = "image"
DEFAULT_MODEL = "hf:stabilityai/sd-turbo"

#: a short list of named samplers; "default" keeps the one the model ships with
SCHEDULERS = {
    "default": None,
    "euler": "EulerDiscreteScheduler",
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
}

#: diffusers' upscale pipelines (image.upscale's models) and how much larger each makes an image
UPSCALERS = {"StableDiffusionUpscalePipeline": 4, "StableDiffusionLatentUpscalePipeline": 2}

# Settings a scheduler made from another's config needs (SD's own DDIM config), by name.
_SCHEDULER_OVERRIDES = {"ddim": {"clip_sample": False, "set_alpha_to_one": False}}


class PipeSet:
    """One loaded diffusers model; offers the manager's lower-memory switches and derives task pipelines."""

    def __init__(self, base: Any):
        self.base = base
        #: LoRA files loaded into this model (path, size, mtime) -> adapter name; kept for the next request
        self.adapters: dict[tuple, str] = {}

    def use_loras(self, files: list[tuple[Path, float]]) -> None:
        """Apply these LoRAs at these weights for the next run (unfused: none of the base weights change, so the
        next request sets other weights, or none, without reloading the model); load the ones not loaded yet."""
        if not files and not self.adapters:
            return
        if not files:
            self.base.disable_lora()
            return
        names, weights = [], []
        for path, weight in files:
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns)
            name = self.adapters.get(key)
            if name is None:
                name = f"lora{len(self.adapters)}"
                try:
                    self.base.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
                except (OSError, ValueError, KeyError, RuntimeError) as exc:
                    raise InvalidInput("loras", f"{path.name} cannot be loaded as a LoRA of this model "
                                                f"({type(exc).__name__}: {str(exc)[:200]}); give a LoRA made for "
                                                "its family (SD 1.x, SD 2.x or SDXL) in safetensors") from exc
                self.adapters[key] = name
            names.append(name)
            weights.append(weight)
        self.base.enable_lora()
        self.base.set_adapters(names, adapter_weights=weights)

    @property
    def components(self) -> dict:
        """The torch modules and helpers of the model (the manager measures and moves these)."""
        return self.base.components

    def to(self, device: str) -> "PipeSet":
        """Move every component (the manager calls this to place or offload the model)."""
        self.base.to(device)
        return self

    @property
    def unet_channels(self) -> int | None:
        """Input channels of the denoiser: 4 text-to-image, 9 inpainting, 8 InstructPix2Pix."""
        denoiser = getattr(self.base, "unet", None)
        return getattr(getattr(denoiser, "config", None), "in_channels", None)

    # -- the manager's lower-memory modes (see engine.models.sizes.lower_memory) --------------

    def enable_vae_slicing(self) -> None:
        """Decode a batch one image at a time."""
        self.base.vae.enable_slicing()

    def enable_vae_tiling(self) -> None:
        """Encode and decode large images in overlapping tiles."""
        self.base.vae.enable_tiling()

    def enable_attention_slicing(self) -> None:
        """Compute attention in slices (less peak memory, a little slower)."""
        self.base.enable_attention_slicing()

    def enable_model_cpu_offload(self) -> None:
        """Keep components in RAM and move each to the GPU only while it runs (accelerate's hooks)."""
        self.base.enable_model_cpu_offload()

    # -- tasks ---------------------------------------------------------------------------------

    def for_task(self, task: str, scheduler: str = "default") -> Any:
        """A pipeline for `task` (text2img, img2img, inpaint, instruct, upscale) sharing this model's weights."""
        import diffusers

        base = self.base
        kwargs = {}
        if SCHEDULERS.get(scheduler):
            # A fresh scheduler per run: schedulers keep per-run state, and the base stays untouched.
            kwargs["scheduler"] = getattr(diffusers, SCHEDULERS[scheduler]).from_config(
                base.scheduler.config, **_SCHEDULER_OVERRIDES.get(scheduler, {}))
        elif hasattr(base, "scheduler"):
            kwargs["scheduler"] = type(base.scheduler).from_config(base.scheduler.config)
        if task in ("instruct", "upscale"):
            pipe = type(base).from_pipe(base, **kwargs)
        else:
            auto = {"text2img": diffusers.AutoPipelineForText2Image, "img2img": diffusers.AutoPipelineForImage2Image,
                    "inpaint": diffusers.AutoPipelineForInpainting}[task]
            pipe = auto.from_pipe(base, **kwargs)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def is_instruct(self) -> bool:
        """True for InstructPix2Pix-style models (the edit follows an instruction)."""
        return "InstructPix2Pix" in type(self.base).__name__

    def upscale_factor(self) -> int | None:
        """4 or 2 for diffusers' upscale pipelines (SD x4 upscaler, SD x2 latent upscaler), None for the others."""
        return UPSCALERS.get(type(self.base).__name__)

    def check_task(self, task: str, model: str) -> None:
        """Refuse a task the checkpoint cannot do, saying what it can do instead."""
        channels = self.unet_channels
        if (task == "upscale") != bool(self.upscale_factor()):
            raise InvalidInput("model", f"{model!r} is an upscale model; give it to image.upscale as its model"
                               if self.upscale_factor() else
                               f"{model!r} is a {type(self.base).__name__}, not an upscale model; use e.g. "
                               "hf:stabilityai/stable-diffusion-x4-upscaler or hf:stabilityai/sd-x2-latent-upscaler, "
                               "or leave model empty for Lanczos resampling")
        if task == "upscale":
            return
        if task == "instruct":
            if not self.is_instruct():
                raise InvalidInput("model", f"{model!r} is not an InstructPix2Pix model; use e.g. hf:timbrooks/"
                                            "instruct-pix2pix for instructions, or mode img2img or inpaint")
        elif self.is_instruct() or channels == 8:
            raise InvalidInput("model", f"{model!r} is an InstructPix2Pix model and cannot do {task}; use "
                                        "image.edit with an instruction as the prompt (mode auto or instruct)")
        elif channels == 9 and task != "inpaint":
            raise InvalidInput("model", f"{model!r} is an inpainting model and cannot do {task}; give image.edit "
                                        "a mask, or use a text-to-image model")


def loader(device: str) -> Callable[[Path], PipeSet]:
    """The manager's loader: `from_pretrained` on the CPU, half precision when it will run on a GPU; a
    `.safetensors` file is a single-file checkpoint (see checkpoints.py)."""

    def load(folder: Path) -> PipeSet:
        import torch
        from diffusers import DiffusionPipeline

        quiet_libraries("diffusers", "transformers")

        dtype = getattr(torch, dtype_for(device))
        if folder.is_file():
            from .checkpoints import load_single_file

            return PipeSet(load_single_file(folder, dtype))
        try:
            base = DiffusionPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True,
                                                     variant=_variant(folder, device))
        except (OSError, ValueError) as exc:  # not a diffusers model (or not one in safetensors)
            raise InvalidInput("model", f"{folder.name} cannot be loaded as a diffusers pipeline ({exc}); name "
                                        "a diffusers model with safetensors weights, e.g. hf:stabilityai/sd-turbo"
                               ) from exc
        return PipeSet(base)

    return load


def _variant(folder: Path, device: str) -> str | None:
    """"fp16" when half-precision weights are present and wanted (or the only ones), else the plain files."""
    weights = list(folder.glob("*/*.safetensors"))
    half = [w for w in weights if w.name.endswith(".fp16.safetensors")]
    plain = [w for w in weights if w.name.count(".") == 1]
    if half and (device != "cpu" or not plain):
        return "fp16"
    return None


def diffuse(ctx, pipes: PipeSet, task: str, scheduler: str, seeds: list[int], **call) -> list:
    """Run one task pipeline; one image at a time, progress per step, cancellation between steps.

    A batch runs as one pipeline call per image, not one batched call: batched kernels are not
    bit-identical to single ones on every device, and image i must come out the same when it is
    made alone with seed + i (that is how a saved file is re-run).
    """
    import torch

    pipe = pipes.for_task(task, scheduler)
    count, done_before = len(seeds), [0]

    def on_step_end(pipeline, step: int, timestep, tensors: dict) -> dict:
        per_image = getattr(pipeline, "num_timesteps", None)
        total = per_image * count if per_image else None
        ctx.progress(done_before[0] + step + 1, total, "denoising")
        ctx.check_cancelled()
        return {}

    images = []
    try:
        for i, seed in enumerate(seeds):
            # this image's share of the per-image lists (prompts, source images)
            one = {k: v[i:i + 1] if isinstance(v, list) and len(v) == count else v for k, v in call.items()}
            # a CPU generator: the same seed gives the same starting noise on every device
            generator = torch.Generator("cpu").manual_seed(seed)
            with torch.inference_mode():
                result = pipe(generator=[generator], num_images_per_prompt=1, callback_on_step_end=on_step_end,
                              output_type="pil", **one)
            images += [image.convert("RGB") for image in result.images]
            done_before[0] += getattr(pipe, "num_timesteps", 0) or 0
    finally:
        # A derived pipeline does not own the offload hooks; the base puts every component back in RAM.
        free = getattr(pipes.base, "maybe_free_model_hooks", None)
        if free is not None and getattr(pipes.base, "_all_hooks", None):
            free()
    return images


def lora_files(ctx, loras: list | None) -> list[tuple[Path, float]]:
    """The LoRA files of a `loras` input ({path or ref, weight} each), found under the model roots."""
    if not loras:
        return []
    store = ctx.require_models().store
    found = []
    for i, item in enumerate(loras):
        ref = item.get("path") or item.get("ref")
        if not isinstance(ref, str) or not ref:
            raise InvalidInput("loras", f"item {i} names no LoRA; give {{\"path\": \"loras/NAME.safetensors\", "
                                        "\"weight\": 0.8}")
        where = store.path(ref)  # InvalidModelRef (400) for a bad reference, a pickle file, a missing one
        if where.is_dir():  # a LoRA repository or folder: its one weights file
            files = sorted(where.glob("*.safetensors"))
            preferred = [f for f in files if f.name == "pytorch_lora_weights.safetensors"]
            if len(preferred or files) != 1:
                raise InvalidInput("loras", f"{ref!r} is a folder with {len(files)} .safetensors files; name one")
            where = (preferred or files)[0]
        found.append((where, float(item.get("weight", 1.0))))
    return found


def lora_params(loras: list | None) -> dict:
    """The `loras` entry of saved parameters and recipes: [{path, weight}] as given (nothing when none)."""
    if not loras:
        return {}
    return {"loras": [{"path": item.get("path") or item.get("ref"), "weight": float(item.get("weight", 1.0))}
                      for item in loras]}


#: the `loras` input of the image nodes (a list of {path or ref, weight})
LORAS_SCHEMA = {"type": "array", "maxItems": 8, "items": {
    "type": "object", "additionalProperties": False, "properties": {
        "path": {"type": "string", "minLength": 1, "maxLength": 256},
        "ref": {"type": "string", "minLength": 1, "maxLength": 256},
        "weight": {"type": "number", "minimum": -4, "maximum": 4}}}}


def lease_and_run(ctx, model: str, work: Callable[[PipeSet], Any]) -> Any:
    """Run `work(pipes)` on the model through the manager's out-of-memory ladder, holding the GPU lock."""
    manager = ctx.require_models()
    with ctx.gpu():
        return manager.run(model, loader(manager.device), work,
                           variant=VARIANT, progress=ctx.model_progress)
