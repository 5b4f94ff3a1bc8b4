"""Primitive value nodes: a literal of each basic type, as an output other nodes can link to."""

from engine import BOOL, FLOAT, INT, JSON, TEXT, Input, Node, Output


class Text(Node):
    """A text value."""

    type = "primitive.text"
    blocking = False
    inputs = {"value": Input(TEXT, "the text")}
    outputs = {"value": Output(TEXT, "the same text")}

    def run(self, ctx, value):
        return {"value": value}


class Int(Node):
    """An integer value."""

    type = "primitive.int"
    blocking = False
    inputs = {"value": Input(INT, "the integer")}
    outputs = {"value": Output(INT, "the same integer")}

    def run(self, ctx, value):
        return {"value": value}


class Float(Node):
    """A number."""

    type = "primitive.float"
    blocking = False
    inputs = {"value": Input(FLOAT, "the number")}
    outputs = {"value": Output(FLOAT, "the same number")}

    def run(self, ctx, value):
        return {"value": float(value)}


class Bool(Node):
    """A true/false value."""

    type = "primitive.bool"
    blocking = False
    inputs = {"value": Input(BOOL, "true or false")}
    outputs = {"value": Output(BOOL, "the same value")}

    def run(self, ctx, value):
        return {"value": value}


class Json(Node):
    """Any JSON value (object, array, string, number, boolean or null)."""

    type = "primitive.json"
    blocking = False
    inputs = {"value": Input(JSON, "the JSON value")}
    outputs = {"value": Output(JSON, "the same value")}

    def run(self, ctx, value):
        return {"value": value}
