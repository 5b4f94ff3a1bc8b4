"""Value types that flow between node ports, and which links between them are allowed."""

from __future__ import annotations

from enum import Enum


class ValueType(str, Enum):
    """The type of a node port; a link is allowed only between compatible types."""

    TEXT = "TEXT"
    INT = "INT"
    FLOAT = "FLOAT"
    BOOL = "BOOL"
    JSON = "JSON"
    IMAGE = "IMAGE"
    MASK = "MASK"
    AUDIO = "AUDIO"
    VIDEO = "VIDEO"

    @property
    def literal_schema(self) -> dict | None:
        """JSON Schema of a literal of this type; None for media, which only arrive by link."""
        return _LITERAL_SCHEMAS.get(self)

    @property
    def is_media(self) -> bool:
        """True for IMAGE, MASK, AUDIO and VIDEO: in-memory objects, files when saved."""
        return self in _MEDIA

    def accepts(self, source: "ValueType") -> bool:
        """Whether an output of type ``source`` may feed an input of this type."""
        return source is self or source in _WIDENS_TO.get(self, ())

    @property
    def accepted(self) -> tuple["ValueType", ...]:
        """Every output type that may feed an input of this type (itself first): the link rule as data.

        ``/nodes`` serves it with each input (``accepts``), so the web editor checks links by the
        same rule as validation and never keeps a copy of it.
        """
        return (self, *_WIDENS_TO.get(self, ()))


TEXT, INT, FLOAT, BOOL, JSON = (ValueType.TEXT, ValueType.INT, ValueType.FLOAT, ValueType.BOOL, ValueType.JSON)
IMAGE, MASK, AUDIO, VIDEO = (ValueType.IMAGE, ValueType.MASK, ValueType.AUDIO, ValueType.VIDEO)

_LITERAL_SCHEMAS = {
    TEXT: {"type": "string"},
    INT: {"type": "integer"},
    FLOAT: {"type": "number"},
    BOOL: {"type": "boolean"},
    JSON: {},
}
_MEDIA = frozenset({IMAGE, MASK, AUDIO, VIDEO})

# Safe widenings only: every JSON-representable value fits a JSON input, an INT fits a FLOAT.
# A JSON output into a TEXT input is refused: json.get offers a `text` output for that.
_WIDENS_TO = {
    JSON: (TEXT, INT, FLOAT, BOOL),
    FLOAT: (INT,),
}
