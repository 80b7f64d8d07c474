"""Log lines as the worker and the web processes make them by the thousand: a ``Shape`` (the
fields of a kind of line, in order) and a tuple of values, rather than a dict a line.

A shaped line is ``(shape, values)``: ``values[0]`` is the event ("order accepted"), the rest
are ``shape.keys`` in order. Its maker promises that every value is plain: an int, or a str that
``plain()`` accepts or that is plain by construction (a UUID's text, a decimal on a grid, an
enum's value). A plain value needs no quoting in either format, so the formatter
(exchange_project.logs) renders a shaped line by one format string per shape, in text and in JSON
alike, and gives the very text it would give for ``as_dict(line)``. A line that cannot keep the
promise (a client id with a space, a market order's missing price) is made as a dict instead.

Pure: stdlib only.
"""

from __future__ import annotations

from typing import Any

Line = tuple["Shape", tuple[Any, ...]]


class Shape:
    """A kind of line: its fields after "event", and which of them are ints (unquoted in JSON)."""

    __slots__ = ("keys", "ints")

    def __init__(self, *keys: str, ints: tuple[str, ...] = ()) -> None:
        assert all(k and k.isidentifier() for k in keys) and set(ints) <= set(keys), keys
        self.keys = keys
        self.ints = frozenset(ints)

    def __repr__(self) -> str:
        return f"Shape{self.keys!r}"


def as_dict(line: Line) -> dict[str, Any]:
    """A shaped line as the dict it stands for."""
    shape, values = line
    return dict(zip(("event", *shape.keys), values, strict=True))


_PLAIN: set[str] = set()
_PLAIN_MAX = 10_000


def plain(text: str, remember: bool = True) -> bool:
    """``text`` can be a value of a shaped line: not empty, printable, no space, quote or
    backslash. What is ``remember``ed (a venue's client ids and symbols, which repeat) is known
    the next time, up to _PLAIN_MAX of them."""
    if text in _PLAIN:
        return True
    if not (text and text.isprintable() and " " not in text and '"' not in text and "\\" not in text):
        return False
    if not remember:
        return True
    if len(_PLAIN) >= _PLAIN_MAX:
        _PLAIN.clear()
    _PLAIN.add(text)
    return True
