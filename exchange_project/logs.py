"""Log lines: one per event worth knowing, JSON (one object a line) or human-readable text.

``LOG_FORMAT=json|text`` picks the formatter (settings.LOGGING); ``ThreadWriter`` writes the
lines to stderr from a thread of its own. Each line carries the fields a
record was given (``extra=``): order_id, client_id, instrument, request_id where known. A record
may carry many lines at once (``extra={"lines": [...]}``, or a function that makes that list when
the record is formatted): the matching worker logs a committed batch's orders that way, one record
per batch, and the web the orders it received, so that a line per order costs a tuple and one
format string's rendering (a shaped line, matching.loglines), not a trip through logging each. A
line is a dict, each with its own "event", or a shaped line.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import sys
import threading
import time
from typing import Any, TextIO

import orjson

from matching.loglines import Line, Shape, as_dict

# What every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "lines"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and v is not None}


def _lines(record: logging.LogRecord) -> list[dict[str, Any] | Line] | None:
    """A many-line record's lines: given as a list, or as a function that makes them (called
    where the record is formatted: ThreadWriter's thread)."""
    lines = getattr(record, "lines", None)
    return lines() if callable(lines) else lines


def _when(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", ...fields}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        base: dict[str, Any] = {"ts": _when(record), "level": record.levelname.lower(), "logger": record.name}
        fields = _fields(record)
        lines = _lines(record)
        if lines is not None:
            base.update(fields)
            if fields:
                dicts = [as_dict(line) if type(line) is tuple else line for line in lines]
                if dicts and not fields.keys() & dicts[0].keys():
                    head = orjson.dumps(base, default=str)[:-1] + b","
                    return b"\n".join(head + orjson.dumps(line, default=str)[1:] for line in dicts).decode()
                return "\n".join(orjson.dumps({**base, **line}, default=str).decode() for line in dicts)
            # The shared head serialized once; each line (never empty: it has an "event") spliced
            # after it: a shaped line by its shape's format, a dict by orjson.
            head = orjson.dumps(base)[:-1] + b","
            text = head.decode()
            return "\n".join([text + (_JSON.get(line[0]) or _json_format(line[0])) % line[1] if type(line) is tuple
                               else (head + orjson.dumps(line, default=str)[1:]).decode() for line in lines])
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
        lines = _lines(record)
        if lines is not None:
            if fields:
                return "\n".join([_text(head, {**fields, **(as_dict(line) if type(line) is tuple else line)})
                                   for line in lines])
            first = head + " "
            return "\n".join([first + (_TEXT.get(line[0]) or _text_format(line[0])) % line[1] if type(line) is tuple
                               else _text(head, line) for line in lines])
        text = _text(head, {"event": record.getMessage(), **fields})
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


# A shaped line's format string, per shape, in each format: its values are plain (matching.loglines),
# so neither format has anything to quote, and each gives what the line as a dict would give.
_TEXT: dict[Shape, str] = {}
_JSON: dict[Shape, str] = {}


def _text_format(shape: Shape) -> str:
    fmt = _TEXT[shape] = " ".join(["%s", *[f"{k}=%s" for k in shape.keys]])
    return fmt


def _json_format(shape: Shape) -> str:
    fmt = _JSON[shape] = ",".join(['"event":"%s"', *[f'"{k}":%s' if k in shape.ints else f'"{k}":"%s"'
                                                      for k in shape.keys]]) + "}"
    return fmt


# Per shape of line (its keys, in order): every value as text, run together, and the fields
# as text; built once a shape, then filled by one C-level formatting call each.
_SHAPES: dict[tuple[str, ...], tuple[str, str]] = {}


def _shape(keys: tuple[str, ...]) -> tuple[str, str]:
    if len(_SHAPES) >= 256:
        _SHAPES.clear()
    rest = keys[1:]
    shape = _SHAPES[keys] = ("%s" * len(rest), " ".join(f"{k.replace('%', '%%')}=%s" for k in rest))
    return shape


def _text(head: str, fields: dict[str, Any]) -> str:
    """``fields`` is left as it is (a line of a many-line record is rendered as given)."""
    keys = tuple(fields)
    if keys and keys[0] == "event":
        # A line as order_lines makes them: its event first, then values that are all plain
        # (none None, empty or false, none with a space or a control character): checked on
        # all of them run together, and rendered by the line's shape.
        rest = tuple(fields.values())[1:]
        if rest and all(rest):
            together, fmt = _SHAPES.get(keys) or _shape(keys)
            flat = together % rest
            if flat.isprintable() and " " not in flat:
                return f"{head} {fields['event']} {fmt % rest}"
    return _text_each(head, fields)


def _text_each(head: str, fields: dict[str, Any]) -> str:
    """Any line: each value rendered by itself (what ``_text``'s one pass gives, for a line it takes)."""
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


class ThreadWriter(logging.Handler):
    """Writes records to the stream (stderr) from a thread of its own, formatting them there: the
    thread that logs only files the record (its filters, the request id's among them, run then),
    so that neither the rendering of a batch's lines nor a disk slow to take them, or a pipe its
    reader has let fill, holds up the event loop that logged them; the rendering runs while that
    loop waits on the database or the network. What queued meanwhile is written at once.
    ``flush`` waits (within FLUSH_WAIT_S) until everything logged so far is written; ``close``
    (logging.shutdown, at exit and before a worker ends itself) writes the rest and ends the
    thread. A process killed with SIGKILL loses the lines not yet written (milliseconds' worth)."""

    FLUSH_WAIT_S = 5.0

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self._start()
        # A forked child has no thread but the one that forked: it starts a writer of its own.
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self._queue: queue.Queue[logging.LogRecord | None] = queue.Queue()
        self._thread = threading.Thread(target=self._write, name="pgbourse-log-writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        self._queue.put(record)

    def _write(self) -> None:
        while True:
            records = [self._queue.get()]
            while len(records) < 1000:
                try:
                    records.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            texts = []
            for record in records:
                if record is not None:
                    try:
                        texts.append(self.format(record) + "\n")
                    except Exception:
                        self.handleError(record)
            try:
                self.stream.write("".join(texts))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # the stream is gone: nothing to write the lines to
            finally:
                for _ in records:
                    self._queue.task_done()
            if None in records:
                return

    def flush(self) -> None:
        deadline = time.monotonic() + self.FLUSH_WAIT_S
        while self._queue.unfinished_tasks and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(self.FLUSH_WAIT_S)
        super().close()
