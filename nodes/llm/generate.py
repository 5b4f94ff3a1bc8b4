"""LLM nodes that write text: generate (prompt -> text), chat (messages -> reply), edit (text -> edited text + diff)."""

from __future__ import annotations

import difflib
import io
from urllib.parse import unquote

from engine import JSON, TEXT, Input, InvalidInput, Node, Output, Seed

from .backend import complete
from .ports import (MAX_CHARS, blank_problems, build_messages, max_tokens_input, model_input, model_problems,
                    privacy_input, require_text, stop_input, structured, temperature_input, text_input,
                    top_p_input, usage_output)
from .types import Request

MAX_IMAGES = 16

EDIT_SYSTEM = ("You are a careful editor. Apply the instruction to the text and answer with the complete edited "
               "text only: no preamble, no explanation, no quotation marks around it.")


class Generate(Node):
    """Generate text from a prompt with an LLM: system prompt, JSON context, free text or structured output."""

    type = "text.generate"
    inputs = {
        "prompt": text_input("what the model should write or answer"),
        "model": model_input(),
        "system": Input(TEXT, "system prompt: who the model is and how it answers", default="", maxLength=MAX_CHARS,
                        widget="multiline"),
        "context": Input(JSON, "a JSON object given to the model as structured context", default=None,
                         allOf=[{"type": "object"}]),
        "max_tokens": max_tokens_input(512),
        "temperature": temperature_input(0.8),
        "top_p": top_p_input(),
        "stop": stop_input(),
        "seed": Seed(),
        "format": Input(JSON, '"text" (free text), "json" (any JSON value), or a JSON Schema object the answer '
                              "must fit (structured output; an invalid answer is retried once)", default="text",
                        anyOf=[{"enum": ["text", "json"]}, {"type": "object"}]),
        "privacy": privacy_input(),
    }
    outputs = {"text": Output(TEXT, "the answer (JSON text when format asks for JSON)"), "usage": usage_output()}

    @classmethod
    def check(cls, literals, given):
        yield from model_problems(literals)
        yield from blank_problems(literals, ("prompt",))
        problem = format_problem(literals.get("format"))
        if problem:
            yield "format", problem

    def run(self, ctx, prompt, model, system, context, max_tokens, temperature, top_p, stop, seed, format,
            privacy):
        require_text(prompt=prompt)
        problem = format_problem(format)  # a param or a link may bring what check() never saw
        if problem:
            raise InvalidInput("format", problem)
        request = Request(build_messages(system, context, prompt), max_tokens, temperature, top_p, tuple(stop), seed,
                          None if format == "text" else format)
        if request.format is None:
            reply = complete(ctx, model, privacy, request)
        else:
            schema = format if isinstance(format, dict) else None
            _, reply = structured(ctx, model, privacy, request, schema, "JSON answer")
        return {"text": reply.text.strip() if request.format is not None else reply.text, "usage": reply.usage}


class Chat(Node):
    """Continue a conversation: messages (system, user, assistant) -> the assistant's reply."""

    type = "text.chat"
    inputs = {
        "messages": Input(JSON, 'the conversation so far: [{"role": "system"|"user"|"assistant", "content": "..."}], '
                                "ending with the user's message",
                          allOf=[{"type": "array", "minItems": 1, "maxItems": 1000, "items": {
                              "type": "object", "required": ["role", "content"], "additionalProperties": False,
                              "properties": {"role": {"enum": ["system", "user", "assistant"]},
                                             "content": {"type": "string", "maxLength": MAX_CHARS}}}}]),
        "model": model_input(),
        "system": Input(TEXT, "system prompt put before the messages (empty: none)", default="", maxLength=MAX_CHARS,
                        widget="multiline"),
        "max_tokens": max_tokens_input(512),
        "temperature": temperature_input(0.8),
        "top_p": top_p_input(),
        "stop": stop_input(),
        "seed": Seed(),
        "format": Input(JSON, '"text" (free text), "json" (any JSON value), or a JSON Schema object the reply '
                              "must fit (structured output; an invalid answer is retried once)", default="text",
                        anyOf=[{"enum": ["text", "json"]}, {"type": "object"}]),
        "images": Input(JSON, "images (PNG, JPEG, WebP or GIF as base64) shown to a vision model with the last user "
                              f"message, at most {MAX_IMAGES}", default=[],
                        allOf=[{"type": "array", "maxItems": MAX_IMAGES, "items": {"type": "string", "minLength": 1}}]),
        "task": Input(TEXT, "which default model an empty `model` means: chat, or vision (what images choose when "
                            "this is empty)", default="", enum=["", "chat", "vision"]),
        "privacy": privacy_input(),
    }
    outputs = {
        "reply": Output(TEXT, "the assistant's reply"),
        "messages": Output(JSON, "the conversation with the reply appended (feed it back for the next turn)"),
        "usage": usage_output(),
    }

    @classmethod
    def check(cls, literals, given):
        yield from model_problems(literals)
        messages = literals.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            if messages[-1].get("role") != "user":
                yield "messages", f"the last message must be the user's, got {messages[-1].get('role')!r}"
        problem = format_problem(literals.get("format"))
        if problem:
            yield "format", problem

    def run(self, ctx, messages, model, system, max_tokens, temperature, top_p, stop, seed, format, images, task,
            privacy):
        if messages[-1]["role"] != "user":  # the shape itself was checked as the run passed it in
            raise InvalidInput("messages", f"the last message must be the user's, got {messages[-1]['role']!r}")
        problem = format_problem(format)
        if problem:
            raise InvalidInput("format", problem)
        prefix = [{"role": "system", "content": system}] if system.strip() else []
        pictures = tuple(image_bytes(data, f"images[{i}]") for i, data in enumerate(images))
        request = Request([*prefix, *messages], max_tokens, temperature, top_p, tuple(stop), seed,
                          None if format == "text" else format, pictures)
        task = task or ("vision" if pictures else "chat")
        if request.format is None:
            reply = complete(ctx, model, privacy, request, task=task)
        else:
            schema = format if isinstance(format, dict) else None
            _, reply = structured(ctx, model, privacy, request, schema, "JSON answer", task=task)
            reply.text = reply.text.strip()
        return {"reply": reply.text, "messages": [*messages, {"role": "assistant", "content": reply.text}],
                "usage": reply.usage}


class Edit(Node):
    """Edit a text by an instruction: the edited text and a unified diff against the input."""

    type = "text.edit"
    inputs = {
        "text": text_input("the text to edit"),
        "instruction": text_input("what to change, e.g. 'fix the grammar' or 'make it formal'"),
        "model": model_input(),
        "system": Input(TEXT, "system prompt (empty: a careful editor that answers with the edited text only)",
                        default="", maxLength=MAX_CHARS, widget="multiline"),
        "max_tokens": max_tokens_input(1024),
        "temperature": temperature_input(0.2),
        "seed": Seed(),
        "privacy": privacy_input(),
    }
    outputs = {
        "text": Output(TEXT, "the edited text"),
        "diff": Output(TEXT, "unified diff from the input to the edited text (empty when unchanged)"),
        "usage": usage_output(),
    }

    @classmethod
    def check(cls, literals, given):
        yield from model_problems(literals)
        yield from blank_problems(literals, ("text", "instruction"))

    def run(self, ctx, text, instruction, model, system, max_tokens, temperature, seed, privacy):
        require_text(text=text, instruction=instruction)
        prompt = f"Instruction: {instruction}\n\nText:\n{text}"
        request = Request(build_messages(system or EDIT_SYSTEM, None, prompt), max_tokens, temperature, 1.0, (), seed)
        reply = complete(ctx, model, privacy, request)
        edited = reply.text.strip()
        if text.endswith("\n"):
            edited += "\n"
        return {"text": edited, "diff": unified_diff(text, edited), "usage": reply.usage}


def image_bytes(data: str, where: str) -> bytes:
    """PNG or JPEG bytes from base64 (a data URL's base64 too); other formats PIL reads become PNG."""
    import base64
    import binascii

    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("images", f"{where} is not base64; give the image file's bytes as base64") from None
    if raw[:8] == b"\x89PNG\r\n\x1a\n" or raw[:3] == b"\xff\xd8\xff":
        return raw
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
            return buffer.getvalue()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidInput("images", f"{where} is not an image PIL can read ({exc}); give a PNG or JPEG") from None


def format_problem(fmt) -> str | None:
    """What is wrong with a `format` that is meant as a JSON Schema, or None."""
    if not isinstance(fmt, dict):
        return None
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(fmt)
    except SchemaError as exc:
        return f"is not a valid JSON Schema: {exc.message}"
    return _reference_problem(fmt)


def _reference_problem(schema: dict) -> str | None:
    """A `$ref` that leaves the schema or points nowhere (check_schema lets both pass; validating would raise)."""
    anchors, refs, stack = set(), [], [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                    refs.append(value)
                elif key in ("$anchor", "$dynamicAnchor") and isinstance(value, str):
                    anchors.add(value)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    for ref in refs:
        if not ref.startswith("#"):
            return f"$ref {ref!r} leaves the schema; only references inside it (#/$defs/NAME) are allowed"
        if ref.startswith("#/") or ref == "#":
            target = schema
            for part in ref[2:].split("/") if ref != "#" else ():
                part = unquote(part).replace("~1", "/").replace("~0", "~")
                if isinstance(target, dict) and part in target:
                    target = target[part]
                elif isinstance(target, list) and part.isascii() and part.isdigit() and len(part) < 10 \
                        and int(part) < len(target):
                    target = target[int(part)]
                else:
                    return f"$ref {ref!r} points to nothing in the schema"
        elif ref[1:] not in anchors:
            return f"$ref {ref!r} names no $anchor in the schema"
    return None


def unified_diff(before: str, after: str) -> str:
    """A unified diff of two texts, line by line ("" when they are equal)."""
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), "original", "edited", lineterm="")
    return "\n".join(lines) + ("\n" if before != after else "")
