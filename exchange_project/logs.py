"""Log lines: one per event worth knowing, JSON (one object a line) or human-readable text.

``LOG_FORMAT=json|text`` picks the formatter (settings.LOGGING). Each line carries the fields a
record was given (``extra=``): order_id, client_id, instrument, request_id where known. A record
may carry many lines at once (``extra={"lines": [{...}, ...]}``, each with its own "event"): the
matching worker logs a committed batch's orders that way, one record per batch, so that a line
per order costs a dict and its rendering, not a trip through logging each.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import orjson

# What every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "lines"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and v is not None}


def _when(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", ...fields}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        base: dict[str, Any] = {"ts": _when(record), "level": record.levelname.lower(), "logger": record.name}
        fields = _fields(record)
        lines = getattr(record, "lines", None)
        if lines is not None:
            base.update(fields)
            if lines and not fields.keys() & lines[0].keys():
                # The shared head serialized once; each line (never empty: it has an "event")
                # spliced after it.
                head = orjson.dumps(base, default=str)[:-1] + b","
                return b"\n".join(head + orjson.dumps(line, default=str)[1:] for line in lines).decode()
            return "\n".join(orjson.dumps({**base, **line}, default=str).decode() for line in lines)
        base["event"] = record.getMessage()
        base.update(fields)
        if record.exc_info:
            base["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(base, default=str).decode()


class TextFormatter(logging.Formatter):
    """``2026-12-02T13:00:00.123Z INFO logger: event key=value ...`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        head = f"{_when(record)} {record.levelname} {record.name}:"
        fields = _fields(record)
        lines = getattr(record, "lines", None)
        if lines is not None:
            if fields:
                return "\n".join([_text(head, {**fields, **line}) for line in lines])
            return "\n".join([_text(head, line) for line in lines])
        text = _text(head, {"event": record.getMessage(), **fields})
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _text(head: str, fields: dict[str, Any]) -> str:
    """``fields`` is left as it is (a line of a many-line record is rendered as given)."""
    return " ".join([head, str(fields.get("event", "")),
                     *[f"{k}={v}" if type(v) is int or (type(v) is str and v.isprintable() and " " not in v and v)
                       else f"{k}={_value(v)}" for k, v in fields.items() if v is not None and k != "event"]])


def _value(value: Any) -> str:
    """A value as text; a string with spaces or control characters (a client's, perhaps) quoted
    as JSON, so that no value can break a line or fake a field."""
    text = str(value)
    if text.isprintable() and " " not in text and text:
        return text
    return orjson.dumps(text).decode()
