"""Write a diffusers Stable Diffusion folder as one `.safetensors` file in the original (LDM, A1111) layout.

The reverse of diffusers' single-file conversion, after diffusers' own
scripts/convert_diffusers_to_original_stable_diffusion.py, generalised to any number of blocks and
layers (the tiny test UNet has two blocks of one layer). Used by the tests to make a "user's
checkpoint" offline and load it back through flow's single-file path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

_RESNET = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"), ("out_layers.3", "conv2"),
           ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]
_VAE_ATTN = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]


def unet_to_ldm(state: dict, config: dict) -> dict:
    """diffusers UNet2DConditionModel weights -> `model.diffusion_model.*` keys."""
    layers = config["layers_per_block"]
    down, up = config["down_block_types"], config["up_block_types"]
    fixed = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
             "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
    prefixes = []
    for i, kind in enumerate(down):
        for j in range(layers):
            prefixes.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{(layers + 1) * i + j + 1}.0."))
            if "CrossAttn" in kind:
                prefixes.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{(layers + 1) * i + j + 1}.1."))
        if i < len(down) - 1:
            prefixes.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(layers + 1) * (i + 1)}.0.op."))
    for i, kind in enumerate(up):
        for j in range(layers + 1):
            prefixes.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{(layers + 1) * i + j}.0."))
            if "CrossAttn" in kind:
                prefixes.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{(layers + 1) * i + j}.1."))
        if i < len(up) - 1:
            slot = 2 if "CrossAttn" in kind else 1
            prefixes.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{(layers + 1) * i + layers}.{slot}."))
    prefixes += [("mid_block.attentions.0.", "middle_block.1."), ("mid_block.resnets.0.", "middle_block.0."),
                 ("mid_block.resnets.1.", "middle_block.2.")]
    out = {}
    for key, value in state.items():
        new = key
        for hf, sd in fixed.items():
            if new.startswith(hf):
                new = sd + new[len(hf):]
        for hf, sd in prefixes:
            if new.startswith(hf):
                rest = new[len(hf):]
                if "resnets" in hf:
                    for sd_part, hf_part in _RESNET:
                        rest = rest.replace(hf_part, sd_part)
                new = sd + rest
                break
        out["model.diffusion_model." + new] = value
    return out


def vae_to_ldm(state: dict, config: dict) -> dict:
    """diffusers AutoencoderKL weights -> `first_stage_model.*` keys (attention as 1x1 convolutions)."""
    layers = config["layers_per_block"]
    blocks = len(config["block_out_channels"])
    prefixes = []
    for i in range(blocks):
        for j in range(layers):
            prefixes.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}."))
        for j in range(layers + 1):
            prefixes.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{blocks - 1 - i}.block.{j}."))
        if i < blocks - 1:
            prefixes.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
            prefixes.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{blocks - 1 - i}.upsample."))
    for side in ("encoder", "decoder"):
        prefixes += [(f"{side}.mid_block.resnets.0.", f"{side}.mid.block_1."),
                     (f"{side}.mid_block.resnets.1.", f"{side}.mid.block_2."),
                     (f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.")]
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out")
        for hf, sd in prefixes:
            if new.startswith(hf):
                rest = new[len(hf):].replace("conv_shortcut", "nin_shortcut")
                if "attn_1" in sd:
                    for sd_part, hf_part in _VAE_ATTN:
                        rest = rest.replace(hf_part, sd_part)
                    if value.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                        value = value[:, :, None, None]
                new = sd + rest
                break
        out["first_stage_model." + new] = value
    return out


def write_single_file(folder: Path, target: Path, *, with_config: bool = True) -> Path:
    """Write the SD pipeline in ``folder`` as ``target`` (.safetensors, LDM keys); with ``with_config``, its
    diffusers configs (and tokenizer) beside it as ``<name>.config/`` (a tiny model has no shipped config)."""
    from safetensors.torch import load_file, save_file

    unet = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
    vae = load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")
    text = load_file(folder / "text_encoder" / "model.safetensors")
    state = {**unet_to_ldm(unet, json.loads((folder / "unet" / "config.json").read_text())),
             **vae_to_ldm(vae, json.loads((folder / "vae" / "config.json").read_text())),
             # the original layout names the CLIP text model as transformers 4 did: text_model.*
             **{"cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
                for k, v in text.items()}}
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    if with_config:
        config = target.with_suffix(".config")
        shutil.copytree(folder, config, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return target
