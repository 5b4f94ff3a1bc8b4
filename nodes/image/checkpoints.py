"""Single-file checkpoints: a `.safetensors` file in the original (A1111 / ComfyUI) layout, loaded offline.

The family (SD 1.x, SD 2.x, SDXL) comes from the checkpoint's tensor names
(:func:`engine.models.checkpoint_family`, which reads only the header). diffusers' single-file
loader then builds the pipeline from configs that never come from the hub: a folder
``NAME.config/`` beside the file when there is one (a diffusers layout: model_index.json and
each component's config, e.g. for a fine-tune with an unusual architecture), else the folder
shipped here for the family (``configs/sd1``, ``configs/sd2``, ``configs/sdxl``).

The CLIP tokenizer's vocabulary, which every SD checkpoint shares and none contains, is shipped
once in ``configs/clip_tokenizer`` (OpenAI CLIP's BPE vocabulary, MIT licence, written out as
the vocab.json/merges.txt that transformers' CLIPTokenizer reads; "a photo of a cat" gives the
ids the hub's openai/clip-vit-large-patch14 gives), unless the ``.config`` folder has its own.
diffusers and transformers are imported inside the functions that use them.
"""

from __future__ import annotations

from pathlib import Path

from engine import InvalidInput
from engine.models.store import checkpoint_family

CONFIGS = Path(__file__).resolve().parent / "configs"
#: families flow loads, with the config folder shipped for each
FAMILIES = {"sd1": "SD 1.x", "sd2": "SD 2.x (v-prediction, 768)", "sdxl": "SDXL base"}
#: the CLIP tokenizer used when the config folder has none (its vocabulary is the same for all three families)
CLIP_TOKENIZER = CONFIGS / "clip_tokenizer"
#: tokenizers that pad with "!" (OpenCLIP's), by family
_BANG_PAD = {"sd2": ("tokenizer",), "sdxl": ("tokenizer_2",)}


def config_folder(file: Path) -> tuple[Path, str]:
    """The config folder for a checkpoint file and its family; refuses files flow cannot build offline."""
    family = checkpoint_family(file)
    family = family[:-len("-inpaint")] if family and family.endswith("-inpaint") else family
    beside = file.with_suffix(".config")
    if beside.is_dir() and (beside / "model_index.json").is_file():
        return beside, family or "custom"
    if family == "lora":
        raise InvalidInput("model", f"{file.name} is a LoRA, not a checkpoint; give it in 'loras' and a base model "
                                    "in 'model'")
    if family not in FAMILIES:
        known = ", ".join(FAMILIES.values())
        raise InvalidInput("model", f"{file.name} is not a checkpoint flow can load offline (found: "
                                    f"{family or 'no Stable Diffusion UNet keys'}); flow loads {known} in the "
                                    f"original single-file layout, or put a diffusers config folder beside it "
                                    f"as {beside.name}/")
    return CONFIGS / family, family


def load_single_file(file: Path, dtype):
    """The diffusers pipeline of a single-file checkpoint, built from local configs only."""
    import diffusers

    folder, family = config_folder(file)
    index = diffusers.DiffusionPipeline.load_config(str(folder))
    pipeline_class = getattr(diffusers, index["_class_name"])
    components = _tokenizers(folder, family, index)
    channels = _unet_in_channels(file)
    unet_config = diffusers.UNet2DConditionModel.load_config(str(folder), subfolder="unet")
    try:
        if channels and channels != unet_config.get("in_channels"):
            # an inpainting (9) or InstructPix2Pix (8) fine-tune of the family: its configs, more input channels
            components["unet"] = diffusers.UNet2DConditionModel.from_single_file(
                str(file), config=str(folder), subfolder="unet", local_files_only=True, dtype=dtype,
                in_channels=channels)
        return pipeline_class.from_single_file(str(file), config=str(folder), local_files_only=True,
                                               dtype=dtype, **components)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InvalidInput("model", f"{file.name} cannot be loaded as a {FAMILIES.get(family, family)} checkpoint "
                                    f"({type(exc).__name__}: {str(exc)[:300]}); check that it is a full checkpoint "
                                    "(UNet, VAE and text encoder), or put its diffusers configs beside it as "
                                    f"{file.with_suffix('.config').name}/") from exc


def _unet_in_channels(file: Path) -> int | None:
    """Input channels of the checkpoint's UNet, from the header (4 text-to-image, 9 inpainting)."""
    from engine.models.store import safetensors_header

    shape = (safetensors_header(file).get("model.diffusion_model.input_blocks.0.0.weight") or {}).get("shape")
    return shape[1] if isinstance(shape, list) and len(shape) == 4 else None


def _tokenizers(folder: Path, family: str, index: dict) -> dict:
    """Tokenizers the config folder lacks the vocabulary of, made from the shipped CLIP tokenizer."""
    names = [name for name in ("tokenizer", "tokenizer_2") if name in index]
    missing = [name for name in names
               if not any((folder / name / file).is_file() for file in ("vocab.json", "tokenizer.json"))]
    if not missing:
        return {}
    source = CLIP_TOKENIZER  # the same vocabulary for SD 1.x, 2.x and both of SDXL's tokenizers
    from transformers import CLIPTokenizer

    made = {}
    for name in missing:
        pad = "!" if name in _BANG_PAD.get(family, ()) else "<|endoftext|>"
        made[name] = CLIPTokenizer.from_pretrained(str(source), pad_token=pad, model_max_length=77)
    return made
