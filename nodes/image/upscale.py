"""Upscaling: `image.upscale` makes images larger with Lanczos resampling, or with a diffusers upscale model.

With no `model` the node resamples (nothing to load). With one, diffusers' own upscale pipelines do
the work: Stable Diffusion's x4 upscaler (`StableDiffusionUpscalePipeline`, e.g.
hf:stabilityai/stable-diffusion-x4-upscaler) or the x2 latent upscaler
(`StableDiffusionLatentUpscalePipeline`, hf:stabilityai/sd-x2-latent-upscaler), leased through the
model manager like every image model (nodes/image/pipes.py: device, dtype, out-of-memory ladder).
The model's result is then resampled to the asked `scale`. ESRGAN-family files (spandrel) are not
loaded: spandrel pulls torchvision, which this project does not pin. PIL and torch are imported
inside the functions that use them.
"""

from __future__ import annotations

from engine import FLOAT, IMAGE, INT, TEXT, Input, InvalidInput, Node, Output

from .pipes import lease_and_run
from .values import Images, recipe_of

#: the largest image the node makes (width x height), as image.load accepts
MAX_PIXELS = 4096 * 4096
SEED_MAX = 2**53 - 1


class Upscale(Node):
    """Make images larger: Lanczos resampling, or a diffusers upscale model (SD x4 upscaler, SD x2 latent upscaler)."""

    type = "image.upscale"
    inputs = {
        "images": Input(IMAGE, "the images to upscale"),
        "scale": Input(FLOAT, "how much larger: 2 doubles the width and the height", default=2.0, minimum=1,
                       maximum=8),
        "method": Input(TEXT, "lanczos: the resampling that makes the asked scale (after the model's pass, if any)",
                        default="lanczos", enum=["lanczos"]),
        "multiple_of": Input(INT, "round the new sides down to a multiple of this (8 for a diffusion refine)",
                             default=8, minimum=1, maximum=64),
        "model": Input(TEXT, "empty: resampling only; or a diffusers upscale model (hf:stabilityai/stable-diffusion-"
                             "x4-upscaler, hf:stabilityai/sd-x2-latent-upscaler, or a folder under a models root)",
                       default="", maxLength=256, widget="model"),
        "prompt": Input(TEXT, "with a model: what the image shows (guides the detail it adds)", default="",
                        maxLength=10_000, widget="multiline"),
        "steps": Input(INT, "with a model: denoising steps", default=20, minimum=1, maximum=150),
        "guidance": Input(FLOAT, "with a model: guidance scale; 0-1 ignores the prompt (faster), 7-9 follows it",
                          default=0.0, minimum=0, maximum=30),
        "noise_level": Input(INT, "with the x4 upscaler: noise added to the input (more lets it invent more detail)",
                             default=20, minimum=0, maximum=350),
        "seed": Input(INT, "with a model: the noise seed (image i uses seed + i)", default=0, minimum=0,
                      maximum=SEED_MAX),
    }
    outputs = {"images": Output(IMAGE, "the larger images")}

    def run(self, ctx, images, scale, method, multiple_of, model, prompt, steps, guidance, noise_level, seed):
        from PIL import Image

        if images is None:
            raise InvalidInput("images", "no image was given; link an IMAGE to upscale")
        width, height = images.size
        new = (int(width * scale) // multiple_of * multiple_of, int(height * scale) // multiple_of * multiple_of)
        if new[0] * new[1] > MAX_PIXELS:
            raise InvalidInput("scale", f"{width}x{height} x {scale:g} is {new[0]}x{new[1]}, more than {MAX_PIXELS} "
                                        "pixels; use a smaller scale")
        if min(new) < 1:
            raise InvalidInput("multiple_of", f"{width}x{height} x {scale:g} rounded to multiples of {multiple_of} "
                                              "is empty; use a smaller multiple_of")
        pictures = list(images.images)
        literals = {"scale": scale, "method": method, "multiple_of": multiple_of}
        upscale = {"scale": scale, "method": method}
        extra: list[dict] = [{} for _ in pictures]
        if model:
            seeds = [seed + i for i in range(len(pictures))]
            settings = {"prompt": prompt, "steps": steps, "guidance": guidance, "noise_level": noise_level}
            sources = pictures
            factor, pictures = lease_and_run(ctx, model, lambda pipes: _model_pass(ctx, pipes, model, sources, seeds,
                                                                                   **settings))
            if factor != 4:  # only the x4 upscaler takes a noise level
                settings.pop("noise_level")
            literals.update(model=model, **settings, seed=seed)
            upscale.update(model=model, factor=factor, **settings)
            extra = [{"seed": s} for s in seeds]
        larger = tuple(p if p.size == new else p.resize(new, Image.Resampling.LANCZOS) for p in pictures)
        params = tuple({**images.params[i], "upscale": {**upscale, **extra[i]}, "width": new[0], "height": new[1]}
                       for i in range(len(larger)))
        # Image i alone with seed + i gives the same pixels (one generator per image), as image.generate's recipes.
        recipes = tuple(recipe_of(ctx.node_id, self.type, {**literals, **extra[i]}, "images",
                                  {"images": images.recipes[i]}) for i in range(len(larger)))
        return {"images": Images(larger, params, recipes)}


def _model_pass(ctx, pipes, model: str, pictures: list, seeds: list[int], *, prompt: str, steps: int,
                guidance: float, noise_level: int) -> tuple[int, list]:
    """Run the upscale pipeline once per image: progress per step, cancellation between steps.

    Returns the model's factor and its images (sides of the input rounded down to the VAE's multiple,
    times the factor). diffusers' upscale pipelines take the older `callback(step, timestep, latents)`.
    """
    import torch

    pipes.check_task("upscale", model)
    factor = pipes.upscale_factor()
    base = pipes.base
    width, height = pictures[0].size
    vae_multiple = getattr(base, "vae_scale_factor", 8)
    native = (width // vae_multiple * vae_multiple * factor, height // vae_multiple * vae_multiple * factor)
    if min(native) < 1:
        raise InvalidInput("images", f"{width}x{height} is too small for {model!r}: each side needs at least "
                                     f"{vae_multiple} pixels")
    if native[0] * native[1] > MAX_PIXELS:
        raise InvalidInput("images", f"{width}x{height} x {factor} (the model's factor) is {native[0]}x{native[1]}, "
                                     f"more than {MAX_PIXELS} pixels; give a smaller image or leave model empty")
    call = {"prompt": [prompt], "num_inference_steps": steps, "guidance_scale": guidance}
    if factor == 4:
        most = base.config.max_noise_level
        if noise_level > most:
            raise InvalidInput("noise_level", f"{model!r} takes a noise level of at most {most}, got {noise_level}")
        call["noise_level"] = noise_level
    pipe = pipes.for_task("upscale")
    count, done_before = len(pictures), [0]

    def on_step(step: int, timestep, latents) -> None:
        ctx.progress(done_before[0] + step + 1, steps * count, "upscaling")
        ctx.check_cancelled()

    results = []
    try:
        for picture, seed in zip(pictures, seeds):
            # a CPU generator: the same seed gives the same noise on every device
            generator = torch.Generator("cpu").manual_seed(seed)
            with torch.inference_mode():
                made = pipe(image=[picture.convert("RGB")], generator=[generator], callback=on_step,
                            output_type="pil", **call)
            results.append(made.images[0].convert("RGB"))
            done_before[0] += steps
    finally:
        # A derived pipeline does not own the offload hooks; the base puts every component back in RAM.
        free = getattr(base, "maybe_free_model_hooks", None)
        if free is not None and getattr(base, "_all_hooks", None):
            free()
    return factor, results
