"""Primitive value nodes: a literal of each basic type, as an output other nodes can link to."""

from engine import BOOL, FLOAT, INT, JSON, TEXT, Input, Node, Output, ValueType


def _primitive(name: str, value_type: ValueType, what: str) -> type[Node]:
    """A node class `primitive.<name>` that outputs its one input, a `what`."""

    class Primitive(Node):
        __doc__ = f"A {what}."
        type = f"primitive.{name}"
        blocking = False
        inputs = {"value": Input(value_type, f"the {what}")}
        outputs = {"value": Output(value_type, f"the same {what}")}

        def run(self, ctx, value):
            # JSON allows 1 where a number is expected; a FLOAT output is always a float
            return {"value": float(value) if value_type is FLOAT else value}

    Primitive.__name__ = Primitive.__qualname__ = name.capitalize()
    return Primitive


Text = _primitive("text", TEXT, "text value")
Int = _primitive("int", INT, "whole number")
Float = _primitive("float", FLOAT, "number")
Bool = _primitive("bool", BOOL, "true/false value")
Json = _primitive("json", JSON, "JSON value (object, array, string, number, boolean or null)")
