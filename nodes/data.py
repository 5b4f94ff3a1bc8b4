"""JSON nodes that need no model: pick a field, save to the output folder."""

import json
import re

from engine import INT, JSON, TEXT, Input, InvalidInput, Node, Output
from engine.saving import SaveNode, open_new, write_sidecar


# An array index: ASCII digits only ("²".isdigit() is true, int() refuses it), short enough for int().
_INDEX = re.compile(r"-?[0-9]{1,18}")


def _walk(value, path: str):
    """Follow a dotted path (``a.b.0.c``); integers index arrays."""
    current = value
    walked = []
    for part in path.split(".") if path else []:
        walked.append(part)
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and _INDEX.fullmatch(part) and -len(current) <= int(part) < len(current):
            current = current[int(part)]
        else:
            raise KeyError(".".join(walked))
    return current


class Get(Node):
    """Pick a field out of a JSON value by a dotted path such as ``choices.0.text``."""

    type = "json.get"
    blocking = False
    inputs = {
        "value": Input(JSON, "the JSON value to read"),
        "path": Input(TEXT, "dotted path; integers index arrays; empty for the value itself", default=""),
        "default": Input(JSON, "returned when the path is missing; null makes a missing path an error",
                         default=None),
    }
    outputs = {
        "value": Output(JSON, "the field"),
        "text": Output(TEXT, "the field as text: strings as they are, anything else as JSON"),
    }

    def run(self, ctx, value, path, default):
        try:
            found = _walk(value, path)
        except KeyError as exc:
            if default is None:
                raise InvalidInput("path", f"path {path!r} not found in the value (missing at {exc.args[0]!r}); "
                                           "fix the path, or give `default` to allow a missing field") from None
            found = default
        text = found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)
        return {"value": found, "text": text}


class Save(SaveNode):
    """Save a JSON value to a new file in the output folder, the run's workflow in a <file>.json sidecar."""

    type = "json.save"
    volatile = False  # a repeat of the same run answers the file it wrote (SaveNode)
    inputs = {
        "value": Input(JSON, "the value to save"),
        "indent": Input(INT, "spaces of indentation; 0 writes one line", default=2, minimum=0, maximum=8),
        **SaveNode.common_inputs("json/flow", "in a <file>.json sidecar"),
    }

    def run(self, ctx, value, indent, prefix, metadata):
        text = json.dumps(value, ensure_ascii=False, indent=indent or None) + "\n"

        def write(path, description):
            with open_new(path) as file:
                file.write(text)
            if description["workflow"] is not None:
                write_sidecar(path, description)

        return self.save(ctx, prefix, ".json", self.description(ctx, {}, metadata), write)
