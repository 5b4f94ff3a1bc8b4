"""Tiny real models the tests build offline: random weights from configs, saved with save_pretrained.

Each builder writes a folder that the real `from_pretrained` code loads, so a test can name it
by reference through the model store (a folder under a models root). Heavy imports stay inside.
"""

from __future__ import annotations

import json
from pathlib import Path

#: a few whole words the tiny CLIP tokenizer knows besides its 512 byte-level pieces
CLIP_WORDS = ("a", "cat", "dog", "red", "blue", "photo", "of", "the", "make", "it")


def _byte_chars() -> list[str]:
    """GPT-2/CLIP's byte-to-unicode table: 256 printable characters, one per byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(keep), 0
    for byte in range(256):
        if byte not in keep:
            keep.append(byte)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def clip_tokenizer(folder: Path):
    """A CLIP tokenizer written offline (vocab.json + merges.txt) and loaded by CLIPTokenizer."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = []
    for word in CLIP_WORDS:
        # Merge left to right: "c a t</w>" -> "ca t</w>" -> "cat</w>".
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.setdefault(pieces[0], len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    unique = list(dict.fromkeys(merges))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in unique), encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def tiny_stable_diffusion(folder: Path, unet_channels: int = 4, seed: int = 0) -> Path:
    """A Stable Diffusion pipeline of ~1 MB: 4 UNet channels text-to-image, 9 inpainting, 8 InstructPix2Pix."""
    import torch
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionInpaintPipeline,
                           StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(folder.parent / f".{folder.name}-tokenizer")
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=unet_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=4, attention_head_dim=2)
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        layers_per_block=1, sample_size=32, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    cls = {4: StableDiffusionPipeline, 9: StableDiffusionInpaintPipeline,
           8: StableDiffusionInstructPix2PixPipeline}[unet_channels]
    pipe = cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
               scheduler=EulerDiscreteScheduler(steps_offset=1), safety_checker=None, feature_extractor=None,
               requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder
