"""Tiny MusicGen and text-to-video models built offline from configs (random weights), saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path

# A Unigram vocabulary for the T5 tokenizers: whole words first, then single characters so
# any prompt tokenizes to something other than <unk>.
_WORDS = ("calm piano drum beat music happy sad song of the and a slow fast sunset city night rain "
          "ocean waves over cinematic lofi jazz guitar bright dark camera pan flying bird forest").split()


def t5_tokenizer():
    """A T5 (Unigram) tokenizer without sentencepiece files: `T5Tokenizer(vocab=[(piece, score)])`."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(f"\u2581{w}", -1.0 - i * 0.01) for i, w in enumerate(_WORDS)]
    vocab += [(c, -20.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789,.-'\u2581"]
    # Pitfall (transformers 5): T5Tokenizer(vocab_file=...) maps every word to <unk>; pass the vocab.
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_musicgen(folder: Path, *, sampling_rate: int = 16000, seed: int = 0) -> Path:
    """A ~60k-parameter MusicGen (T5 text encoder, EnCodec with 4 codebooks, 2-layer decoder) with its processor."""
    import torch
    from transformers import (EncodecConfig, EncodecFeatureExtractor, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, MusicgenProcessor, T5Config)

    tokenizer = t5_tokenizer()
    text = T5Config(vocab_size=len(tokenizer), d_model=16, d_ff=32, d_kv=8, num_layers=2, num_heads=2)
    audio = EncodecConfig(sampling_rate=sampling_rate, upsampling_ratios=[8, 5, 4, 2], hidden_size=16, num_filters=4,
                          codebook_size=64, target_bandwidths=[1.2])
    # num_codebooks must equal the EnCodec's derived number of quantizers (4 at 1.2 kbps here).
    decoder = MusicgenDecoderConfig(vocab_size=64, hidden_size=16, ffn_dim=32, num_hidden_layers=2,
                                    num_attention_heads=2, num_codebooks=4, pad_token_id=64, bos_token_id=64)
    config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(config)
    # EnCodec's codebooks start as zeros, which would decode every token sequence to the same
    # waveform; random codebooks make the audio depend on the sampled tokens, as in a real model.
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    model.generation_config.decoder_start_token_id = 64
    model.generation_config.pad_token_id = 64
    model.save_pretrained(folder)
    MusicgenProcessor(EncodecFeatureExtractor(feature_size=1, sampling_rate=sampling_rate), tokenizer).save_pretrained(folder)
    return folder


def build_wan(folder: Path, *, seed: int = 0) -> Path:
    """A tiny WanPipeline (UMT5 encoder, Wan VAE, 2-layer Wan transformer, flow-matching scheduler)."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = t5_tokenizer()
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=32, d_ff=37, d_kv=8, num_layers=2,
                                               num_heads=4, relative_attention_num_buckets=8))
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
    pipe.save_pretrained(folder)
    return folder
