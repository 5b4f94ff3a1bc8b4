"""Text nodes that need no model: fill a template, join, save to the output folder."""

import json
import re

from engine import JSON, TEXT, Input, InvalidInput, Node, Output
from engine.saving import SaveNode, open_new, write_sidecar

# {name} is a placeholder; {{ and }} are literal braces. Deliberately not str.format, whose
# {a.attr} and {a[0]} syntax would let a template reach into Python objects.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|\{|\}")


def _placeholders(template: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1)]


def _stray_brace(template: str) -> int | None:
    for m in _PLACEHOLDER.finditer(template):
        if m.group(0) in "{}":
            return m.start()
    return None


class Template(Node):
    """Fill {name} placeholders in a template from the node's other, named inputs."""

    type = "text.template"
    blocking = False
    inputs = {"template": Input(TEXT, "text with {name} placeholders; {{ and }} are literal braces",
                                widget="multiline")}
    variadic = Input(JSON, "a value for the placeholder of the same name (text as is, anything else as JSON)")
    outputs = {"text": Output(TEXT, "the filled template")}

    @classmethod
    def check(cls, literals, given):
        template = literals.get("template")
        if not isinstance(template, str):
            return
        position = _stray_brace(template)
        if position is not None:
            yield "template", f"unmatched brace at character {position}; write {{{{ or }}}} for a literal brace"
        for name in _placeholders(template):
            if name not in given:
                yield "template", f"placeholder {{{name}}} has no input named {name!r}; add one to the node"

    def run(self, ctx, template, **values):
        def fill(match):
            token, name = match.group(0), match.group(1)
            if token in ("{{", "}}"):
                return token[0]
            if name is None:
                raise InvalidInput("template", f"unmatched brace at character {match.start()}; write {{{{ or }}}} "
                                               "for a literal brace")
            if name not in values:
                raise InvalidInput("template", f"placeholder {{{name}}} has no input named {name!r}; add one to "
                                               "the node")
            value = values[name]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

        return {"text": _PLACEHOLDER.sub(fill, template)}


class Join(Node):
    """Join two texts with a separator."""

    type = "text.join"
    blocking = False
    inputs = {
        "a": Input(TEXT, "first text"),
        "b": Input(TEXT, "second text"),
        "separator": Input(TEXT, "put between a and b", default=" "),
    }
    outputs = {"text": Output(TEXT, "a, separator, b")}

    def run(self, ctx, a, b, separator):
        return {"text": f"{a}{separator}{b}"}


class Save(SaveNode):
    """Save a text to a new file in the output folder, the run's workflow in a <file>.json sidecar."""

    type = "text.save"
    volatile = False  # a repeat of the same run answers the file it wrote (SaveNode)
    inputs = {
        "text": Input(TEXT, "the text to save"),
        "extension": Input(TEXT, "file type", default="txt", enum=["txt", "md"]),
        **SaveNode.common_inputs("text/flow", "in a <file>.json sidecar"),
    }

    @classmethod
    def cheap(cls, inputs, run) -> bool:
        """A short text of a small workflow: written inline (the sidecar carries the workflow)."""
        text = inputs.get("text")
        return (isinstance(text, str) and len(text) <= cls.CHEAP_CHARS and run is not None
                and len(run.workflow.get("nodes") or ()) <= cls.CHEAP_NODES)

    def run(self, ctx, text, extension, prefix, metadata):
        def write(path, description):
            with open_new(path) as file:
                file.write(text)
            if description["workflow"] is not None:
                write_sidecar(path, description)

        return self.save(ctx, prefix, f".{extension}", self.description(ctx, {}, metadata), write)
