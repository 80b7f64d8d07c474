"""exchange_project.logs.ThreadWriter: records are formatted and written from a thread of their
own, so that neither their rendering nor a stream slow to take them stalls the code that logs."""
from __future__ import annotations

import io
import logging
import threading
import time

from exchange_project.logs import TextFormatter, ThreadWriter


class SlowStream(io.StringIO):
    """A stream that takes 0.3 s for each write (a disk or a pipe that does not keep up)."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: set[str] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.current_thread().name)
        time.sleep(0.3)
        return super().write(text)


def test_a_slow_stream_never_stalls_the_logging_code_and_loses_nothing() -> None:
    stream = SlowStream()
    handler = ThreadWriter(stream)
    handler.setFormatter(TextFormatter())
    log = logging.getLogger("tests.thread_writer")
    log.addHandler(handler)
    log.propagate = False
    try:
        # when lines are logged faster than the stream takes them
        started = time.monotonic()
        for n in range(20):
            log.warning("line %d", n)
        logged_in = time.monotonic() - started
        # then logging them took no time of the caller's
        assert logged_in < 0.2, logged_in
        # and once flushed, every line is there, in order, rendered and written by the writer's thread
        handler.flush()
        lines = stream.getvalue().splitlines()
        assert [line.split(": ", 1)[1] for line in lines] == [f"line {n}" for n in range(20)]
        assert stream.writers == {"pgbourse-log-writer"}
        # (what queued while a write took its time went in one write: far fewer than 20 of 0.3 s)
        assert time.monotonic() - started < 3.0
    finally:
        log.removeHandler(handler)
        handler.close()
    # and closing ends the writer
    assert not handler._thread.is_alive()


def test_a_line_of_plain_values_renders_in_one_pass_exactly_as_value_by_value() -> None:
    """``_text`` renders a line whose event comes first and whose values are all plain in one
    pass; any other line value by value. Both give the same text for every line."""
    from decimal import Decimal

    from exchange_project.logs import _text, _text_each
    from matching.engine.types import Side

    plain = {"event": "order accepted", "order_id": "0193-ab", "client_id": "c8", "trade_id": 5305,
             "price": "30000.00", "side": Side.BUY.value, "seq": 19329}
    odd_values = ["", " ", "a b", "tab\there", "new\nline", None, 0, False, True, Decimal("1.5"), Side.SELL,
                  "50%", "%s", "é", "x=y", 7]
    lines = [plain, {"event": "order accepted"}, {"order_id": "x", "event": "order matched"},
             {"event": "a b", "k": "v"}]
    for value in odd_values:
        for at in ("order_id", "seq"):
            lines.append({**plain, at: value})
        lines.append({**plain, "100%": value})
    for line in lines:
        assert _text("HEAD", line) == _text_each("HEAD", line), line
    assert _text("HEAD", plain) == ("HEAD order accepted order_id=0193-ab client_id=c8 trade_id=5305 "
                                    "price=30000.00 side=buy seq=19329")


def test_a_shaped_line_renders_exactly_as_the_dict_it_stands_for_in_both_formats() -> None:
    """Every shape the worker and the web make (matching.worker.batch, orders.logs), with plain
    values (ints among them, a non-ASCII one), in records with and without fields of their own,
    beside dict lines: each format gives the same text as for the lines as dicts, and JSON that
    parses to them."""
    import json

    from exchange_project.logs import JsonFormatter
    from matching.loglines import Shape, as_dict
    from matching.worker import batch
    from orders import logs as web_logs

    shapes = [value for module in (batch, web_logs) for value in vars(module).values() if type(value) is Shape]
    assert len(shapes) == 8

    def line(shape: Shape, n: int) -> tuple[Shape, tuple[object, ...]]:
        return shape, ("order event", *[n * 1000 + i if k in shape.ints else f"{k}-é{n}" for i, k in enumerate(shape.keys)])

    shaped = [line(shape, n) for n, shape in enumerate(shapes)]
    for lines in (shaped, [shaped[0], {"event": "order rejected", "client_id": "a b", "reason": "x"}, shaped[3]]):
        for fields in ({}, {"source": "inbox"}, {"order_id": "overridden"}):
            as_dicts = [as_dict(x) if type(x) is tuple else x for x in lines]
            for formatter in (TextFormatter(), JsonFormatter()):
                records = [logging.makeLogRecord({"name": "pgbourse.orders", "levelname": "INFO", "msg": "orders",
                                                  "created": 1764763200.5, "lines": given, **fields})
                           for given in (lines, as_dicts)]
                assert formatter.format(records[0]) == formatter.format(records[1])
            out = [json.loads(x) for x in JsonFormatter().format(records[0]).split("\n")]
            assert out == [{"ts": "2025-12-03T12:00:00.500Z", "level": "info", "logger": "pgbourse.orders",
                            **fields, **x} for x in as_dicts]
