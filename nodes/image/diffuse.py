"""Image generation and editing nodes (diffusers): text-to-image, image-to-image, inpainting, instructions."""

from __future__ import annotations

from engine import FLOAT, IMAGE, INT, JSON, MASK, TEXT, Input, InvalidInput, Node, Output, Seed

from . import horde
from .pipes import DEFAULT_MODEL, LORAS_SCHEMA, SCHEDULERS, diffuse, lease_and_run, lora_files, lora_params
from .values import Images, recipe_of

MIN_SIDE, MAX_SIDE = 64, 2048
MAX_BATCH = 8


def _common_inputs(steps: int, guidance: float) -> dict[str, Input]:
    return {
        "negative_prompt": Input(TEXT, "what the image should not show (used when guidance > 1)", default="",
                                 widget="multiline"),
        "steps": Input(INT, "denoising steps", default=steps, minimum=1, maximum=150),
        "guidance": Input(FLOAT, "classifier-free guidance scale; 0 for turbo models, 5-8 for others",
                          default=guidance, minimum=0, maximum=30),
        "scheduler": Input(TEXT, "sampler; 'default' keeps the model's own", default="default", enum=list(SCHEDULERS)),
        "seed": Seed(),
        "model": Input(TEXT, "diffusers model: hf:ORG/NAME, a model folder or .safetensors checkpoint under a "
                             "models root; horde:MODEL for AI Horde (remote: needs privacy flexible); auto: local "
                             "if present, else the fallback",
                       default=DEFAULT_MODEL, minLength=1, maxLength=256, widget="model"),
        "loras": Input(JSON, "LoRAs to apply: [{\"path\": \"loras/NAME.safetensors\", \"weight\": 0.8}] (files "
                             "under a models root, or ref hf:ORG/NAME)", default=None, **LORAS_SCHEMA),
        "privacy": Input(TEXT, "strict: never leave this machine (horde: refused); flexible: a remote model or "
                               "fallback is allowed if the server's FLOW_PRIVACY allows it too",
                         default="flexible", enum=["strict", "flexible"]),
    }


class Generate(Node):
    """Generate images from a text prompt (text-to-image with a diffusers model)."""

    type = "image.generate"
    inputs = {
        "prompt": Input(TEXT, "what the image should show", maxLength=10_000, widget="multiline"),
        "width": Input(INT, "width in pixels (a multiple of 8)", default=512,
                       minimum=MIN_SIDE, maximum=MAX_SIDE, multipleOf=8),
        "height": Input(INT, "height in pixels (a multiple of 8)", default=512,
                        minimum=MIN_SIDE, maximum=MAX_SIDE, multipleOf=8),
        "batch_size": Input(INT, "how many images (image i uses seed + i)", default=1, minimum=1, maximum=MAX_BATCH),
        **_common_inputs(steps=1, guidance=0.0),
    }
    outputs = {"images": Output(IMAGE, "the generated images")}

    def run(self, ctx, prompt, negative_prompt, width, height, batch_size, steps, guidance, scheduler, seed, model,
            loras, privacy):
        seeds = [seed + i for i in range(batch_size)]

        def work(pipes):
            pipes.check_task("text2img", model)
            pipes.use_loras(lora_files(ctx, loras))
            return diffuse(ctx, pipes, "text2img", scheduler, seeds, prompt=[prompt] * batch_size,
                           negative_prompt=[negative_prompt] * batch_size, width=width, height=height,
                           num_inference_steps=steps, guidance_scale=guidance)

        # the routing rule (privacy, AI Horde, fallback): nodes/image/horde.py; Horde's seeds come back
        made = horde.route(ctx, model, lambda ref: lease_and_run(ctx, ref, work), "text2img", seeds, prompt=prompt,
                           negative_prompt=negative_prompt, width=width, height=height, steps=steps,
                           guidance=guidance, scheduler=scheduler, privacy=privacy, loras=bool(loras))
        pictures, seeds = made.images, made.seeds
        shared = {"prompt": prompt, "negative_prompt": negative_prompt, "width": width, "height": height,
                  "steps": steps, "guidance": guidance, "scheduler": scheduler, "model": made.model,
                  **lora_params(loras)}
        params, recipes = [], []
        for i, image_seed in enumerate(seeds):
            params.append({"node": self.type, **shared, "seed": image_seed, **made.extra[i]})
            # Image i alone: batch 1 with seed + i gives the same pixels (one generator per image).
            recipes.append(recipe_of(ctx.node_id, self.type, {**shared, "seed": image_seed, "batch_size": 1},
                                     "images", {}))
        return {"images": Images(tuple(pictures), tuple(params), tuple(recipes))}


class Edit(Node):
    """Edit images: image-to-image from a prompt, inpainting inside a mask, or an instruction (InstructPix2Pix)."""

    type = "image.edit"
    inputs = {
        "image": Input(IMAGE, "the images to edit (sides are rounded down to multiples of 8)"),
        "prompt": Input(TEXT, "what the result should show, or the instruction in instruct mode",
                        default="", maxLength=10_000, widget="multiline"),
        "mask": Input(MASK, "where to repaint (white); given, the edit is inpainting", default=None),
        "mode": Input(TEXT, "auto: inpaint with a mask, instruct for InstructPix2Pix models, else img2img",
                      default="auto", enum=["auto", "img2img", "inpaint", "instruct"]),
        "strength": Input(FLOAT, "how much to change (0-1]; runs steps x strength steps (not in instruct mode)",
                          default=0.5, exclusiveMinimum=0, maximum=1),
        "image_guidance": Input(FLOAT, "instruct mode: how closely to keep the input image", default=1.5,
                                minimum=0, maximum=30),
        **_common_inputs(steps=4, guidance=0.0),
    }
    outputs = {"image": Output(IMAGE, "the edited images")}

    @classmethod
    def check(cls, literals, given):
        steps, strength = literals.get("steps", 4), literals.get("strength", 0.5)
        mode = literals.get("mode", "auto")
        if mode != "instruct" and isinstance(steps, int) and isinstance(strength, (int, float)) \
                and 0 < strength and int(steps * strength) < 1:
            yield "strength", _too_few_steps(steps, strength)
        if mode == "inpaint" and "mask" not in given:
            yield "mask", "mode 'inpaint' needs a mask; link a MASK (e.g. image.load's mask output)"

    def run(self, ctx, image, prompt, mask, mode, strength, image_guidance, negative_prompt, steps, guidance,
            scheduler, seed, model, loras, privacy):
        if image is None:
            raise InvalidInput("image", "no image was given; give an image to edit")
        pictures, mask_picture = _prepared(image, mask)
        width, height = pictures[0].size
        n = len(pictures)
        seeds = [seed + i for i in range(n)]
        call = {"prompt": [prompt] * n, "negative_prompt": [negative_prompt] * n, "image": pictures,
                "num_inference_steps": steps, "guidance_scale": guidance}

        def work(pipes):
            task = _task(mode, mask_picture is not None, pipes, model)
            pipes.use_loras(lora_files(ctx, loras))
            if task != "instruct" and int(steps * strength) < 1:  # params skip check(): the run checks again
                raise InvalidInput("strength", _too_few_steps(steps, strength))
            args = dict(call)
            if task == "instruct":
                args["image_guidance_scale"] = image_guidance
            else:
                args["strength"] = strength
            if task == "inpaint":
                args.update(mask_image=[mask_picture] * n, width=width, height=height)
            return task, diffuse(ctx, pipes, task, scheduler, seeds, **args)

        done = {}

        def local(ref):
            done["task"], results = lease_and_run(ctx, ref, work)
            return results

        # the routing rule (privacy, AI Horde img2img/inpainting, fallback): nodes/image/horde.py
        made = horde.route(ctx, model, local, horde.edit_task(mode, mask_picture is not None), seeds, prompt=prompt,
                           negative_prompt=negative_prompt, width=width, height=height, steps=steps,
                           guidance=guidance, scheduler=scheduler, sources=pictures, source_mask=mask_picture,
                           strength=strength, privacy=privacy, loras=bool(loras))
        results, seeds = made.images, made.seeds
        task = done.get("task") or horde.edit_task(mode, mask_picture is not None)
        shared = {"prompt": prompt, "negative_prompt": negative_prompt, "mode": mode, "strength": strength,
                  "image_guidance": image_guidance, "steps": steps, "guidance": guidance, "scheduler": scheduler,
                  "model": made.model, **lora_params(loras)}
        params, recipes = [], []
        for i, image_seed in enumerate(seeds):
            params.append({"node": self.type, "task": task, **shared, "seed": image_seed,
                           "width": width, "height": height, **made.extra[i]})
            upstream = {"image": image.recipes[i]}
            if mask is not None:
                upstream["mask"] = mask.recipe
            recipes.append(recipe_of(ctx.node_id, self.type, {**shared, "seed": image_seed}, "image", upstream))
        return {"image": Images(tuple(results), tuple(params), tuple(recipes))}


def _too_few_steps(steps: int, strength: float) -> str:
    return f"steps x strength must reach 1 denoising step, got {steps} x {strength}; raise steps or strength"


def _task(mode: str, has_mask: bool, pipes, model: str) -> str:
    """The diffusers task for an edit: the explicit mode, or what the inputs and the model suggest."""
    if mode == "auto":
        mode = "inpaint" if has_mask else "instruct" if pipes.is_instruct() else "img2img"
    if mode == "inpaint" and not has_mask:
        raise InvalidInput("mask", "missing: mode 'inpaint' needs a mask; give one, or use mode 'auto'")
    if mode != "inpaint" and has_mask:
        raise InvalidInput("mask", f"only used for inpainting, and mode is {mode!r}; remove it or use 'auto'")
    pipes.check_task(mode, model)
    return mode


def _prepared(image: Images, mask) -> tuple[list, object]:
    """The input images with sides rounded down to multiples of 8, and the mask checked against them."""
    width, height = image.size
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidInput("image", f"{width}x{height}, but each side must be {MIN_SIDE}-{MAX_SIDE} pixels; "
                                    "resize it first")
    if mask is not None and mask.size != image.size:
        raise InvalidInput("mask", f"{mask.size[0]}x{mask.size[1]}, but input 'image' is {width}x{height}; "
                                   "give a mask of the image's size")
    target = (width - width % 8, height - height % 8)
    pictures = list(image.images)
    mask_picture = None if mask is None else mask.image
    if target != (width, height):
        from PIL import Image

        pictures = [p.resize(target, Image.Resampling.LANCZOS) for p in pictures]
        if mask_picture is not None:
            mask_picture = mask_picture.resize(target, Image.Resampling.NEAREST)
    return pictures, mask_picture
