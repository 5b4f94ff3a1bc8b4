"""text.embed (texts -> vectors), text.describe_image (image -> caption, description, OCR or structured
attributes) and text.converse (the small LLM API's chat: a message or messages, system, JSON context)."""

from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path

from engine import IMAGE, INT, JSON, TEXT, Input, InvalidInput, Node, Output, Seed
from engine.errors import BackendFailed
from engine.paths import OutputFiles

from .backend import complete, resolve
from .generate import format_problem
from .ports import (MAX_CHARS, build_messages, max_tokens_input, model_input, model_problems, privacy_input,
                    structured, temperature_input, usage_output)
from .types import Request

MAX_TEXTS = 2048
_PNG, _JPEG = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


class Embed(Node):
    """Embed texts as vectors (one per text) with an embedding model."""

    type = "text.embed"
    inputs = {
        "texts": Input(JSON, f"a text, or a list of up to {MAX_TEXTS} texts",
                       anyOf=[{"type": "string", "minLength": 1, "maxLength": MAX_CHARS},
                              {"type": "array", "minItems": 1, "maxItems": MAX_TEXTS,
                               "items": {"type": "string", "minLength": 1, "maxLength": MAX_CHARS}}]),
        "model": model_input("embed"),
        "privacy": privacy_input(),
    }
    outputs = {
        "vectors": Output(JSON, "one vector (a list of numbers) per text, in order"),
        "dimensions": Output(INT, "length of each vector"),
    }

    @classmethod
    def check(cls, literals, given):
        yield from model_problems(literals)

    def run(self, ctx, texts, model, privacy):
        texts = [texts] if isinstance(texts, str) else list(texts)
        backend = resolve(ctx, model, privacy, task="embed")
        vectors = backend.embed(ctx, texts)
        if len(vectors) != len(texts):
            raise BackendFailed(f"{backend.ref} returned {len(vectors)} vectors for {len(texts)} texts")
        for index, vector in enumerate(vectors):
            if not all(map(math.isfinite, vector)):  # NaN cannot leave as JSON: a broken model, said plainly
                raise BackendFailed(f"{backend.ref} returned NaN or Infinity in the vector of text {index}; the model "
                                "is broken or not an embedding model; name another one")
        return {"vectors": vectors, "dimensions": len(vectors[0]) if vectors else 0}


#: the prompt of each named describe task
TASKS = {
    "caption": "Write one short sentence that captions this image. Answer with the caption only.",
    "detailed": "Describe this image in detail: the main subject, its shape, colours and materials, any visible "
                "text or logo, and the setting. Answer with the description only.",
    "ocr": "Transcribe all text in the image exactly, line by line. Answer with the text only.",
}
DEFAULT_PROMPT = "Describe this image."


class DescribeImage(Node):
    """Describe an image with a vision model: a caption, a detailed description, its text (OCR), or
    attributes as JSON fitting a schema."""

    type = "text.describe_image"
    inputs = {
        "image": Input(IMAGE, "the image to look at"),
        "prompt": Input(TEXT, "what to do with it, e.g. 'Describe this image.'; with a task, more instructions "
                              "added to the task's own (the default adds none)", default=DEFAULT_PROMPT,
                        minLength=1, maxLength=MAX_CHARS, widget="multiline"),
        "task": Input(JSON, '"caption", "detailed", "ocr" (read the text), a JSON Schema object (answer with '
                            'attributes as JSON fitting it), or "" (the prompt alone)', default="",
                      anyOf=[{"enum": ["", *TASKS]}, {"type": "object"}]),
        "model": model_input("vision"),
        "max_tokens": max_tokens_input(512),
        "temperature": temperature_input(0.2),
        "seed": Seed(),
        "privacy": privacy_input(),
    }
    outputs = {"text": Output(TEXT, "the description or the text read (JSON text for a schema task)"),
               "data": Output(JSON, "the answer as JSON when the task is a JSON Schema, else null"),
               "usage": usage_output()}

    @classmethod
    def check(cls, literals, given):
        yield from model_problems(literals)
        problem = format_problem(literals.get("task"))
        if problem:
            yield "task", problem

    def run(self, ctx, image, prompt, task, model, max_tokens, temperature, seed, privacy):
        if image is None:  # an optional image.load that got no image: nothing to describe, nothing to fail
            return {"text": "", "data": None, "usage": {}}
        problem = format_problem(task)  # a param or a link may bring what check() never saw
        if problem:
            raise InvalidInput("task", problem)
        extra = "" if prompt.strip() == DEFAULT_PROMPT else prompt.strip()
        if isinstance(task, dict):
            text = ("Look at this image and answer with JSON only, fitting this JSON Schema:\n"
                    + json.dumps(task, ensure_ascii=False) + (f"\n\n{extra}" if extra else ""))
        elif task:
            text = TASKS[task] + (f"\n\n{extra}" if extra else "")
        else:
            text = prompt
        request = Request([{"role": "user", "content": text}], max_tokens, temperature, 1.0, (), seed,
                          task if isinstance(task, dict) else None, images=(png_bytes(image),))
        if isinstance(task, dict):
            value, reply = structured(ctx, model, privacy, request, task, "JSON description", task="vision")
            return {"text": json.dumps(value, ensure_ascii=False), "data": value, "usage": reply.usage}
        reply = complete(ctx, model, privacy, request, task="vision")
        return {"text": reply.text.strip() if task else reply.text, "data": None, "usage": reply.usage}


_MESSAGES = {"type": "array", "maxItems": 1000, "items": {
    "type": "object", "required": ["role", "content"], "additionalProperties": False,
    "properties": {"role": {"enum": ["system", "user", "assistant"]},
                   "content": {"type": "string", "maxLength": MAX_CHARS}}}}


class Converse(Node):
    """Answer a message, or a conversation, as the small LLM API's POST /chat did: system prompt, a JSON
    context object, max_tokens, temperature, model -> content and usage."""

    type = "text.converse"
    inputs = {
        "message": Input(TEXT, "the user's message (give this or messages)", default="", maxLength=MAX_CHARS,
                         widget="multiline"),
        "messages": Input(JSON, 'the conversation so far, ending with the user\'s message: [{"role": "user"|'
                                '"assistant"|"system", "content": "..."}] (give this or message)', default=[],
                          allOf=[_MESSAGES]),
        "system": Input(TEXT, "system prompt: who the model is and how it answers", default="", maxLength=MAX_CHARS,
                        widget="multiline"),
        "context": Input(JSON, "a JSON object given to the model as structured context (after the system prompt)",
                         default=None, allOf=[{"type": ["object", "null"]}]),
        "model": model_input(),
        "max_tokens": max_tokens_input(512),
        "temperature": temperature_input(0.8),
        "seed": Seed(),
        "privacy": privacy_input(),
    }
    outputs = {
        "content": Output(TEXT, "the assistant's answer"),
        "messages": Output(JSON, "the conversation with the answer appended (send it back for the next turn)"),
        "usage": usage_output(),
    }

    @classmethod
    def check(cls, literals, given):
        yield from model_problems(literals)
        message, messages = literals.get("message"), literals.get("messages")
        if isinstance(message, str) and message.strip() and messages:
            yield "messages", "both 'message' and 'messages' are given; give one of them"

    def run(self, ctx, message, messages, system, context, model, max_tokens, temperature, seed, privacy):
        problem = _conversation_problem(message, messages)
        if problem:
            raise InvalidInput(*problem)
        conversation = list(messages) if messages else [{"role": "user", "content": message}]
        prefix = build_messages(system, context, "")[:-1]  # the system message (with the context), if any
        request = Request([*prefix, *conversation], max_tokens, temperature, 1.0, (), seed)
        reply = complete(ctx, model, privacy, request, task="chat")
        return {"content": reply.text, "messages": [*conversation, {"role": "assistant", "content": reply.text}],
                "usage": reply.usage}


def _conversation_problem(message, messages) -> tuple[str, str] | None:
    """(input, message) when message/messages are not exactly one usable conversation, else None."""
    has_message = isinstance(message, str) and bool(message.strip())
    if has_message and messages:
        return "messages", "both 'message' and 'messages' are given; give one of them"
    if not has_message and not messages:
        return "message", "no message given: set 'message' (a text) or 'messages' (the conversation)"
    if messages and isinstance(messages, list) and isinstance(messages[-1], dict) \
            and messages[-1].get("role") != "user":
        return "messages", f"the last message must be the user's, got {messages[-1].get('role')!r}"
    return None


#: the structured product description every product workflow answers with
PRODUCT_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["title", "short", "long", "features", "attributes", "language", "tone"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "short": {"type": "string", "minLength": 1, "maxLength": 600},
        "long": {"type": "string", "minLength": 1, "maxLength": 8000},
        "features": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "string", "maxLength": 300}},
        "attributes": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "language": {"type": "string", "maxLength": 35},
        "tone": {"type": "string", "maxLength": 100},
    },
}
PRODUCT_SYSTEM = ("You are an e-commerce copywriter. From what you are told about a product (its name, what a vision "
                  "model saw in its pictures, the text and data of its web pages, notes), write its description. "
                  "Use only facts you are given; never invent prices, sizes or materials. Answer with JSON only: "
                  "title, short (one or two sentences), long (a few paragraphs), features (a list of short "
                  "phrases), attributes (an object of facts such as colour, material, size, price), language, tone.")


class DescribeProduct(Node):
    """Write a structured product description (title, short, long, features, attributes) from what the other
    nodes found: image descriptions, extracted pages, notes; in a language and a tone."""

    type = "text.describe_product"
    inputs = {
        "name": Input(TEXT, "the product's name, if known", default="", maxLength=500),
        "seen": Input(JSON, "what a vision model saw in the product's pictures: a text or a list of texts",
                      default=None, anyOf=[{"type": "string", "maxLength": MAX_CHARS},
                                           {"type": "array", "maxItems": 16, "items": {"type": ["string", "null"]}},
                                           {"type": "null"}]),
        "page_text": Input(TEXT, "the main text of the product's web page (web.extract's text)", default="",
                           maxLength=MAX_CHARS),
        "page_data": Input(JSON, "the page's metadata (web.extract's metadata: product data, JSON-LD)", default=None),
        "facts": Input(JSON, "known facts (an object), e.g. from the product record", default=None,
                       allOf=[{"type": ["object", "null"]}]),
        "notes": Input(TEXT, "more instructions or facts from the person asking", default="", maxLength=4000,
                       widget="multiline"),
        "tone": Input(TEXT, "tone of voice, e.g. neutral, friendly, luxurious, technical, playful",
                      default="neutral", minLength=1, maxLength=100),
        "language": Input(TEXT, "language to write in (a name or a code such as en, fr, de)", default="en",
                          minLength=1, maxLength=35),
        "model": model_input(),
        "max_tokens": max_tokens_input(1024),
        "temperature": temperature_input(0.4),
        "seed": Seed(),
        "privacy": privacy_input(),
    }
    outputs = {
        "description": Output(JSON, "title, short, long, features, attributes, language, tone (checked against "
                                    "the schema)"),
        "text": Output(TEXT, "the description as JSON text"),
        "usage": usage_output(),
    }

    @classmethod
    def check(cls, literals, given):
        yield from model_problems(literals)

    def run(self, ctx, name, seen, page_text, page_data, facts, notes, tone, language, model, max_tokens,
            temperature, seed, privacy):
        seen_list = [t for t in ([seen] if isinstance(seen, str) else (seen or [])) if isinstance(t, str) and t]
        if not (name.strip() or seen_list or page_text.strip() or page_data or facts or notes.strip()):
            raise InvalidInput("name", "nothing is known about the product: give a name, an image, a page URL, "
                                       "facts or notes")
        context = {"name": name or None, "seen_in_pictures": seen_list or None,
                   "page_text": page_text[:12000] or None, "page_product_data": _page_facts(page_data),
                   "facts": facts or None, "notes": notes or None}
        context = {k: v for k, v in context.items() if v}
        prompt = (f"Write the product description in the language {language!r} with a {tone} tone. Set "
                  f"\"language\" to {json.dumps(language)} and \"tone\" to {json.dumps(tone)}.")
        request = Request(build_messages(PRODUCT_SYSTEM, context, prompt), max_tokens, temperature, 1.0, (), seed,
                          PRODUCT_SCHEMA)
        value, reply = structured(ctx, model, privacy, request, PRODUCT_SCHEMA, "product description")
        value = {**value, "language": language, "tone": tone}  # what was asked for, whatever the model echoed
        return {"description": value, "text": json.dumps(value, ensure_ascii=False), "usage": reply.usage}


def _page_facts(metadata) -> dict | None:
    """What of a page's metadata helps a description: its product data, title, description, site."""
    if not isinstance(metadata, dict):
        return None
    keep = {k: metadata.get(k) for k in ("title", "description", "site", "language", "product")}
    return {k: v for k, v in keep.items() if v} or None


def png_bytes(image) -> bytes:
    """Encoded image bytes from an IMAGE value: a PIL image, encoded bytes, or any media value (its file)."""
    if isinstance(image, (bytes, bytearray)):
        if bytes(image[:8]) == _PNG or bytes(image[:3]) == _JPEG:
            return bytes(image)
        raise InvalidInput("image", "bytes that are neither PNG nor JPEG; give a PNG or JPEG image")
    pil = image.to_pil() if callable(getattr(image, "to_pil", None)) else image
    if hasattr(pil, "save") and hasattr(pil, "mode") and hasattr(pil, "size"):
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG")
        return buffer.getvalue()
    if callable(getattr(image, "write_file", None)):
        # The media protocol: let the value write its own file, in a scratch folder, and read it back.
        with tempfile.TemporaryDirectory(prefix="flow-describe-") as scratch:
            path = Path(image.to_host().write_file(OutputFiles(scratch), "image"))
            return path.read_bytes()
    raise InvalidInput("image", f"a {type(image).__name__}, not an image; link it to a node's IMAGE output")
