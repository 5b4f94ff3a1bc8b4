"""Strict, bounded JSON for text nobody vouches for: request bodies, metadata read out of files.

``loads`` refuses NaN and Infinity, integers of more than :data:`MAX_INT_DIGITS` digits and
nesting deeper than :data:`MAX_DEPTH`, always with a ValueError that says what is wrong.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: nesting of arrays and objects a document may have (workflows need about 6)
MAX_DEPTH = 64
#: digits an integer may have (seeds and sizes fit in 16)
MAX_INT_DIGITS = 32


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number of {len(text)} digits is too long (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON: NaN and Infinity are not numbers JSON allows")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A call into Python per object, where the GIL can go to another thread: json.loads of a
    # 10 MB graph is otherwise one call into C that holds it (and the event loop) ~150 ms.
    return dict(pairs)


# One of each, not one per call (json.loads with hooks builds one): a small text is parsed in one
# call into C (no other thread waits long), a large one with a call into Python per object.
_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant,
                            object_pairs_hook=_object)
_SMALL_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
#: texts up to this many characters are "small"
_SMALL = 64 << 10


def loads(data: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity, bounded integers and nesting; ValueError says what is wrong."""
    if isinstance(data, (bytes, bytearray)):  # what json.loads does with bytes
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    try:
        value = (_SMALL_DECODER if len(data) <= _SMALL else _DECODER).decode(data)
    except RecursionError:
        raise ValueError(f"the JSON nests deeper than {MAX_DEPTH} levels") from None
    check_depth(value)
    return value


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise ValueError when ``value`` nests arrays/objects deeper than ``limit`` (no recursion)."""
    if not isinstance(value, (dict, list)):
        return
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    raise ValueError(f"the JSON nests deeper than {limit} levels")
                stack.append((child, depth + 1))
