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
