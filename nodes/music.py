"""Music nodes: MusicGen through transformers (the same checkpoints audiocraft loads), and saving audio."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine import AUDIO, FLOAT, INT, TEXT, Input, InvalidInput, Node, Output, Seed
from engine.models import dtype_for, quiet_libraries
from engine.saving import SaveNode, remember_saved

from .avmedia import AUDIO_FORMATS, Audio, write_audio

DEFAULT_MODEL = "hf:facebook/musicgen-small"
#: MusicGen was trained on 30 s clips; longer requests drift and soon run out of positions
MAX_SECONDS = 30
_MUSICGEN_TYPES = ("musicgen",)


class Generate(Node):
    """Generate music from a text prompt with MusicGen (transformers)."""

    type = "music.generate"
    inputs = {
        "prompt": Input(TEXT, "what the music should sound like, e.g. 'calm lo-fi piano, 80 bpm'", minLength=1,
                        widget="multiline"),
        "duration": Input(FLOAT, f"length in seconds (at most {MAX_SECONDS})", default=8.0,
                          exclusiveMinimum=0, maximum=MAX_SECONDS),
        "guidance": Input(FLOAT, "classifier-free guidance: how closely to follow the prompt (1 turns it off)",
                          default=3.0, minimum=1, maximum=20),
        "temperature": Input(FLOAT, "sampling temperature; higher is more varied", default=1.0,
                             exclusiveMinimum=0, maximum=5),
        "top_k": Input(INT, "sample among the k most likely tokens", default=250, minimum=1, maximum=2048),
        "seed": Seed(),
        "model": Input(TEXT, "MusicGen model: hf:ORG/NAME[@REV] or a local folder", default=DEFAULT_MODEL,
                       minLength=1, widget="model"),
    }
    outputs = {"audio": Output(AUDIO, "the generated music (waveform and sample rate)")}

    def run(self, ctx, prompt, duration, guidance, temperature, top_k, seed, model):
        manager = ctx.require_models()
        device = manager.device
        dtype_name = dtype_for(device)

        def work(loaded):
            net, processor = loaded
            return _generate(ctx, net, processor, device, prompt, duration, guidance, temperature, top_k, seed)

        samples, rate = manager.run(model, lambda path: _load(path, dtype_name), work, variant=f"musicgen-{dtype_name}",
                                    progress=ctx.model_progress)
        params = {"node": self.type, "model": model, "prompt": prompt, "duration": duration, "guidance": guidance,
                  "temperature": temperature, "top_k": top_k, "seed": seed, "sample_rate": rate}
        return {"audio": Audio(samples, rate, params).fitted(duration)}


class Save(SaveNode):
    """Save audio as WAV, FLAC, OGG (Vorbis) or MP3, with how it was made stored in the file."""

    type = "audio.save"
    inputs = {
        "audio": Input(AUDIO, "the audio to save"),
        "format": Input(TEXT, "file type", default="wav", enum=list(AUDIO_FORMATS)),
        **SaveNode.common_inputs("audio/music", "in the file's comment tag, else a <file>.json sidecar"),
    }

    def run(self, ctx, audio, format, prefix, metadata):
        description = self.description(ctx, getattr(audio, "params", {}), metadata)
        saved = self.save(ctx, prefix, f".{format}", description, lambda path, d: write_audio(path, audio, format, d))
        remember_saved(ctx, audio, saved["path"])  # the faces show this file for `audio`, no copy
        return saved


def _load(path: Path, dtype_name: str):
    """Load a MusicGen model and its processor from a local folder, on the CPU (safetensors only)."""
    import torch
    from transformers import AutoProcessor, MusicgenForConditionalGeneration

    quiet_libraries("transformers")

    config = path / "config.json"
    kind = json.loads(config.read_text()).get("model_type") if config.is_file() else None
    if kind not in _MUSICGEN_TYPES:
        raise InvalidInput("model", f"{path.name} is not a MusicGen model (model_type {kind!r}); "
                                    f"use a MusicGen checkpoint such as {DEFAULT_MODEL}")
    # The model manager runs loaders one at a time (from_pretrained is not thread-safe).
    net = MusicgenForConditionalGeneration.from_pretrained(path, dtype=getattr(torch, dtype_name),
                                                           use_safetensors=True)
    processor = AutoProcessor.from_pretrained(path)
    return net.eval(), processor


def _generate(ctx, net, processor, device, prompt, duration, guidance, temperature, top_k, seed):
    """Sample audio tokens (progress per token, cancellable) and decode them; returns (samples, rate)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    frame_rate = net.config.audio_encoder.frame_rate
    codebooks = net.decoder.config.num_codebooks
    # The delay pattern staggers the codebooks: n audio frames take n + codebooks - 1 tokens.
    tokens = max(1, round(duration * frame_rate)) + codebooks - 1
    limit = net.decoder.config.max_position_embeddings
    if tokens > limit:
        raise InvalidInput("duration", f"{duration} s needs {tokens} tokens but this model holds at most "
                                       f"{limit}; ask for at most {(limit - codebooks + 1) / frame_rate:.0f} s")

    class Progress(StoppingCriteria):
        """Reports each generated token and stops the job promptly when it is cancelled."""

        def __init__(self):
            self.step = 0
            self.reported = 0.0

        def __call__(self, input_ids, scores, **kwargs):
            ctx.check_cancelled()
            self.step += 1
            # Every token is checked for cancellation, but reported at most every 50 ms (and the
            # last one always): an event per token costs the generation itself measurable time.
            now = time.perf_counter()
            if now - self.reported >= 0.05 or self.step >= tokens:
                self.reported = now
                ctx.progress(self.step, tokens, "tokens")
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    inputs = processor(text=[prompt], padding=True, return_tensors="pt").to(device)
    with ctx.gpu(), torch.inference_mode(), torch.random.fork_rng(devices=[] if device == "cpu" else None):
        # generate() takes no generator: seed the global RNGs inside a fork, restored afterwards
        torch.manual_seed(seed)
        out = net.generate(**inputs, do_sample=True, max_new_tokens=tokens, guidance_scale=guidance,
                           temperature=temperature, top_k=top_k, stopping_criteria=StoppingCriteriaList([Progress()]))
    samples = out[0].float().cpu().numpy()  # (channels, samples)
    return samples, int(net.config.audio_encoder.sampling_rate)
