"""The in-process backend: transformers models leased through the model manager.

Chat models load as `AutoModelForCausalLM` + tokenizer (its chat template builds the prompt),
embedding models as `AutoModel` (mean-pooled, normalised), vision models as
`AutoModelForImageTextToText` + `AutoProcessor`. Weights load from safetensors only and remote
code is never trusted. Generation runs in the node's worker thread holding the engine's GPU lock; a
streamer turns tokens into progress, and a stopping criterion stops it when the job is cancelled.
"""

from __future__ import annotations

import io
import json
import time
from typing import Callable

from engine import Cancelled
from engine.errors import InvalidInput
from engine.models import dtype_for, quiet_libraries

from .types import Reply, Request

EMBED_BATCH = 32
#: seconds between streamed pieces after the first (progress events stay smooth, decoding stays cheap)
STREAM_FLUSH_S = 0.05


class TransformersBackend:
    """Runs a Hugging Face model (`hf:ORG/NAME` or a local folder) in this process."""

    name = "transformers"
    remote = False

    def __init__(self, manager, ref):
        self.manager = manager
        self.model_ref = ref
        self.ref = str(ref)

    def complete(self, ctx, request: Request, on_text: Callable[..., None]) -> Reply:
        """Generate (in the node's worker thread) with the chat or the vision model."""
        work = self._describe if request.images else self._chat
        return work(ctx, request, on_text)

    def embed(self, ctx, texts: list[str]) -> list[list[float]]:
        """Mean-pooled, L2-normalised last hidden states, one vector per text."""
        return self._embed(ctx, texts)

    # -- chat ------------------------------------------------------------------------------

    def _chat(self, ctx, request: Request, on_text) -> Reply:
        messages = with_format_instruction(request.messages, request.format)

        def work(bundle):
            model, tokenizer = bundle
            if not getattr(tokenizer, "chat_template", None):
                raise InvalidInput("model", f"{self.ref} has no chat template; use an instruct/chat model "
                                            "(e.g. hf:Qwen/Qwen2.5-0.5B-Instruct)")
            encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True)
            with ctx.gpu():
                return self._generate(ctx, model, tokenizer, dict(encoded), request, on_text)

        return self.manager.run(self.model_ref, _loader("causal-lm", self.manager.device), work, variant="causal-lm")

    def _generate(self, ctx, model, tokenizer, encoded: dict, request: Request, on_text) -> Reply:
        import torch

        prompt_tokens = int(encoded["input_ids"].shape[-1])
        text_config = getattr(model.config, "text_config", None) or model.config  # vision models nest it
        limit = getattr(text_config, "max_position_embeddings", None)
        if limit and prompt_tokens + request.max_tokens > limit:
            raise InvalidInput("max_tokens", f"the prompt ({prompt_tokens} tokens) plus max_tokens "
                                             f"({request.max_tokens}) exceeds the context of {self.ref} "
                                             f"({limit} tokens); shorten the input or lower max_tokens")
        encoded = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in encoded.items()}
        streamer = _streamer(tokenizer, on_text)
        kwargs = dict(max_new_tokens=request.max_tokens, streamer=streamer,
                      stopping_criteria=_cancel_criteria(ctx), pad_token_id=_pad_id(tokenizer))
        if request.temperature > 0:
            kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if request.stop:
            kwargs.update(stop_strings=list(request.stop), tokenizer=getattr(tokenizer, "tokenizer", tokenizer))
        if request.seed is not None:
            torch.manual_seed(request.seed)  # under the GPU lock: no other generation draws in between
        with torch.inference_mode():
            out = model.generate(**encoded, **kwargs)
        if ctx.cancelled:
            raise Cancelled()
        new = out[0, prompt_tokens:]
        text = tokenizer.decode(new, skip_special_tokens=True)
        stopped_by, text = _cut_at_stop(text, request.stop)
        eos = _eos_ids(model)
        hit_eos = len(new) > 0 and int(new[-1]) in eos
        reason = "stop" if stopped_by or hit_eos or len(new) < request.max_tokens else "length"
        return Reply(text, {"prompt_tokens": prompt_tokens, "completion_tokens": int(len(new)), "done_reason": reason})

    # -- vision ----------------------------------------------------------------------------

    def _describe(self, ctx, request: Request, on_text) -> Reply:
        from PIL import Image

        images = [Image.open(io.BytesIO(data)).convert("RGB") for data in request.images]
        messages = [dict(m) for m in request.messages]
        last = messages[-1]
        last["content"] = [*({"type": "image"} for _ in images), {"type": "text", "text": last["content"]}]
        for m in messages[:-1]:
            m["content"] = [{"type": "text", "text": m["content"]}]

        def work(bundle):
            model, processor = bundle
            prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
            try:
                encoded = processor(images=images, text=prompt, return_tensors="pt")
            except ValueError as exc:  # e.g. an image smaller than the processor's patch size
                sizes = ", ".join(f"{i.width}x{i.height}" for i in images)
                raise InvalidInput("image", f"{self.ref} cannot read a {sizes} image ({exc}); give a larger "
                                            "image") from exc
            encoded = {k: v.to(model.dtype) if v.is_floating_point() else v for k, v in encoded.items()}
            with ctx.gpu():
                return self._generate(ctx, model, processor, encoded, request, on_text)

        return self.manager.run(self.model_ref, _loader("vision", self.manager.device), work, variant="vision")

    # -- embeddings ------------------------------------------------------------------------

    def _embed(self, ctx, texts: list[str]) -> list[list[float]]:
        import torch

        def work(bundle):
            model, tokenizer = bundle
            vectors = []
            with ctx.gpu(), torch.inference_mode():
                for start in range(0, len(texts), EMBED_BATCH):
                    ctx.check_cancelled()
                    batch = tokenizer(texts[start:start + EMBED_BATCH], padding=True, truncation=True,
                                      return_tensors="pt").to(model.device)
                    hidden = model(**batch).last_hidden_state
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                    vectors += torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().tolist()
                    ctx.progress(min(start + EMBED_BATCH, len(texts)), len(texts))
            return vectors

        return self.manager.run(self.model_ref, _loader("embed", self.manager.device), work, variant="embed")


def with_format_instruction(messages: list[dict], fmt) -> list[dict]:
    """Ask for JSON in the system prompt (transformers has no grammar-constrained decoding)."""
    if fmt is None:
        return messages
    ask = "Answer with one JSON value only, no prose."
    if isinstance(fmt, dict):
        ask = f"Answer with one JSON object only, no prose, valid against this JSON Schema:\n{json.dumps(fmt)}"
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{ask}"}, *messages[1:]]
    return [{"role": "system", "content": ask}, *messages]


def _loader(kind: str, device: str):
    """A loader for the model manager: reads the folder on the CPU, in the dtype the device wants."""

    def load(path):
        import torch
        import transformers as tf

        quiet_libraries("transformers")

        common = dict(dtype=getattr(torch, dtype_for(device)), use_safetensors=True, trust_remote_code=False)
        try:
            if kind == "vision":
                model = tf.AutoModelForImageTextToText.from_pretrained(path, **common)
                companion = tf.AutoProcessor.from_pretrained(path)
            else:
                cls = tf.AutoModelForCausalLM if kind == "causal-lm" else tf.AutoModel
                model = cls.from_pretrained(path, **common)
                companion = tf.AutoTokenizer.from_pretrained(path)
                if companion.pad_token is None:
                    companion.pad_token = companion.eos_token
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInput("model", f"cannot load {path.name} as a {kind} model: {str(exc).splitlines()[0]}; "
                                        "check the reference names a transformers model of that kind") from exc
        return model.eval(), companion

    return load


def _streamer(tokenizer, on_text):
    from transformers.generation.streamers import BaseStreamer

    tok = getattr(tokenizer, "tokenizer", tokenizer)

    class Streamer(BaseStreamer):
        """Forwards new text to `on_text` with the count of tokens generated so far.

        Text goes out with the first token, then at most every STREAM_FLUSH_S (decoding costs
        about as much per call as a tiny model's step): a short window from the last emitted
        boundary is decoded, and a piece is held back while its bytes end mid-character.
        """

        def __init__(self):
            self.ids: list[int] = []
            self.prefix = self.read = 0
            self.prompt = True
            self.last = 0.0

        def put(self, value):
            if self.prompt:  # generate() first hands over the prompt
                self.prompt = False
                return
            self.ids += value.reshape(-1).tolist()
            now = time.perf_counter()
            if len(self.ids) == value.numel():
                on_text("", len(self.ids))  # times the first token even before it forms a character
            elif now - self.last < STREAM_FLUSH_S:
                return
            if self._emit():
                self.last = now

        def end(self):
            self._emit(final=True)

        def _emit(self, final: bool = False) -> bool:
            before = tok.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
            now = tok.decode(self.ids[self.prefix:], skip_special_tokens=True)
            if len(now) <= len(before) or (now.endswith("\ufffd") and not final):
                return False
            on_text(now[len(before):], len(self.ids))
            self.prefix, self.read = self.read, len(self.ids)
            return True

    return Streamer()


def _cancel_criteria(ctx):
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopWhenCancelled(StoppingCriteria):
        """Ends generation at the next token once the job is cancelled."""

        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), ctx.cancelled, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopWhenCancelled()])


def _pad_id(tokenizer):
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def _eos_ids(model) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    return set(eos if isinstance(eos, list) else [] if eos is None else [eos])


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[bool, str]:
    """Drop the first stop string and what follows (as Ollama and OpenAI servers do)."""
    cuts = [text.find(s) for s in stops if s and s in text]
    return (True, text[:min(cuts)]) if cuts else (False, text)
