"""A tiny Llama chat model built offline: a byte-level BPE tokenizer trained here, a chat template,
random weights saved with save_pretrained, so it loads through the same from_pretrained path as
real checkpoints. About 30k parameters; 20 tokens generate in a few hundredths of a second."""

from __future__ import annotations

from pathlib import Path

TINY = "tiny-llm"  # the local folder reference of the tiny model in the tests' store
TINY_VISION = "tiny-vlm"  # the tiny vision-language model beside it
SPECIALS = ["<pad>", "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<image>"]

CHAT_TEMPLATE = (
    "<s>{% for m in messages %}<|{{ m['role'] }}|>"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% endif %}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_WORDS = ("the quick brown fox jumps over a lazy dog while seven small robots write clear short poems about rain "
          "sun river stone light music image video text score reason criteria edit fix grammar formal answer json "
          "model token context system user assistant hello world flow engine graph node cache seed evaluate")
CORPUS = [_WORDS] + [" ".join(_WORDS.split()[i:i + 7]) for i in range(0, 70)] + [
    '{"scores": {"clarity": 7}, "reasons": {"clarity": "ok"}, "overall": 7}', "Instruction: Text: Context (JSON):",
    "0 1 2 3 4 5 6 7 8 9 10 { } [ ] : , \" . ! ?",
]


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="<|end|>",
                                        pad_token="<pad>", additional_special_tokens=SPECIALS[3:])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _text_config(tokenizer, hidden: int = 32, layers: int = 2, arch: str = "llama"):
    from transformers import LlamaConfig, Qwen2Config

    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    shape = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True)
    return (Qwen2Config if arch == "qwen2" else LlamaConfig)(**ids, **shape)


def build_tiny_llm(folder: Path, arch: str = "llama", hidden: int = 32, layers: int = 2) -> Path:
    """Write a tiny chat model (tokenizer + config + safetensors weights) into `folder`."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_text_config(tokenizer, hidden, layers, arch))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_vlm(folder: Path) -> Path:
    """Write a tiny LLaVA (CLIP vision tower, 32x32 pixels in 8x8 patches, tiny Llama) and its processor."""
    import torch
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor)

    tokenizer = _tokenizer()
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8)
    config = LlavaConfig(vision_config=vision, text_config=_text_config(tokenizer), vision_feature_layer=-1,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    processor = LlavaProcessor(CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                               tokenizer, patch_size=8, vision_feature_select_strategy="default",
                               chat_template=CHAT_TEMPLATE, num_additional_image_tokens=1)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


class TinyGenerator:
    """The tiny model loaded directly (no flow code): what the fake servers answer with."""

    def __init__(self, folder: Path):
        import threading

        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder).eval()
        self.lock = threading.Lock()

    def pieces(self, messages: list[dict], max_tokens: int = 16, temperature: float = 0.8, top_p: float = 0.9,
               seed: int | None = None) -> tuple[int, list[str], int]:
        """(prompt tokens, the reply in streamed pieces, completion tokens)."""
        import torch

        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 else \
            dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self.lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(**encoded, max_new_tokens=max_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                      **sampling)
        prompt = encoded["input_ids"].shape[-1]
        new = [t for t in out[0, prompt:].tolist() if t not in self.tokenizer.all_special_ids]
        # Decode incrementally, as servers stream: a piece ends where the bytes form whole characters.
        pieces, shown = [], ""
        for end in range(1, len(new) + 1):
            text = self.tokenizer.decode(new[:end])
            if not text.endswith("\ufffd") and len(text) > len(shown):
                pieces.append(text[len(shown):])
                shown = text
        text = self.tokenizer.decode(new)
        if text != shown:
            pieces.append(text[len(shown):])
        return prompt, pieces, len(new)

    def embed(self, text: str) -> list[float]:
        """Mean of the model's input embeddings over the text's tokens, normalised."""
        import torch

        ids = self.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            vector = self.model.get_input_embeddings()(ids)[0].mean(0)
        return torch.nn.functional.normalize(vector, dim=0).tolist()

    def words(self, seed: int = 0, count: int = 6) -> list[str]:
        """A few non-empty words the model says (fills strings of a structured answer)."""
        _, pieces, _ = self.pieces([{"role": "user", "content": "say something"}], max_tokens=24, seed=seed)
        found = "".join(pieces).split()
        return (found + ["text"] * count)[:count]
