"""Logging that never blocks the event loop.

Handlers write to stderr, which a slow consumer (a full pipe, a stalled log shipper) can block; a
blocked write in the trio thread would stall every request. So records go into a bounded queue and a
listener thread writes them; when the queue is full the record is dropped and counted, not waited for.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys


class DroppingQueueHandler(logging.handlers.QueueHandler):
    def __init__(self, q: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(q)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The access log (one record per request) is a ready string: no formatting and no copy of the
        # record is needed to hand it to the writer thread.
        if not record.args and record.exc_info is None and isinstance(record.msg, str):
            return record
        return super().prepare(record)

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


def setup_logging(access_log: bool, max_queued: int = 10_000) -> logging.handlers.QueueListener:
    """Route all logging through a bounded queue to stderr; returns the started listener."""
    q: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=max_queued)
    out = logging.StreamHandler(sys.stderr)
    out.setFormatter(logging.Formatter("%(message)s"))
    listener = logging.handlers.QueueListener(q, out, respect_handler_level=False)
    # Records are only ever formatted as their message: skip collecting thread and process names and
    # walking the stack for the caller's file and line (the logging HOWTO's "Optimization" settings).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    root = logging.getLogger()
    root.handlers[:] = [DroppingQueueHandler(q)]
    root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("trigate.access").disabled = not access_log
    listener.start()
    return listener
