"""The gateway's log output: stderr, buffered, so that a line per request is not a write per request.

Under load the access log writes one line per request; a plain ``StreamHandler`` on stderr makes
each a ``write`` system call and formats it with the caller's file and line looked up. Here lines
are collected and written together: at once for a warning or worse, otherwise within
:data:`FLUSH_EVERY_S` (a background thread), and at exit (``logging.shutdown``).
"""

from __future__ import annotations

import logging
import sys
import threading
import time

#: longest an info line waits in the buffer
FLUSH_EVERY_S = 0.2


class BufferedStderr(logging.StreamHandler):
    """A StreamHandler on stderr whose records are written in batches (see the module's doc)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self._lines: list[str] = []
        self._wake = threading.Event()
        threading.Thread(target=self._flush_loop, name="flow-log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)  # list.append is atomic: no lock on the hot path
        if record.levelno >= logging.WARNING or len(self._lines) >= 256:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            lines, self._lines = self._lines, []
            if lines and self.stream is not None:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (OSError, ValueError):  # stderr closed: nothing to tell
                    pass

    def _flush_loop(self) -> None:
        while not self._wake.wait(FLUSH_EVERY_S):
            if self._lines:
                self.flush()

    def append(self, line: str) -> None:
        """A line formatted already (``info_line``), written with the next batch."""
        self._lines.append(line)
        if len(self._lines) >= 256:
            self.flush()


class _Formatter(logging.Formatter):
    """The standard format, with the time text made once per second rather than once per line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        """``created`` as the format's asctime writes it (milliseconds truncated, as LogRecord.msecs is)."""
        second = int(created)
        if second != self._second[0]:
            self._second = (second, time.strftime(self.default_time_format, self.converter(created)))
        return self.default_msec_format % (self._second[1], (created - second) * 1000 // 1)


#: the handler configure() installed, while it is the root logger's only one
_installed: BufferedStderr | None = None


def info_line(logger: logging.Logger, message: str) -> None:
    """``logger.info(message)``, for a line per request: when the record would only reach the handler
    configure() installed, the line is formatted here and handed to it, the same text without a
    LogRecord (a tenth of a cached request's CPU). Anything else (another handler, a filter, a
    test capturing records) goes through logging as usual."""
    handler = _installed
    if handler is not None and logger.isEnabledFor(logging.INFO) and _only_to(logger, handler):
        handler.append(f"{handler.formatter.stamp(time.time())} INFO {logger.name}: {message}\n")
    else:
        logger.info("%s", message)


def _only_to(logger: logging.Logger, handler: BufferedStderr) -> bool:
    """True when an INFO record of ``logger`` reaches ``handler`` and nothing else: no filter, no other handler."""
    node = logger
    while node.parent is not None:  # up to the root
        if node.handlers or node.filters or not node.propagate:
            return False
        node = node.parent
    return node.handlers == [handler] and not node.filters and not handler.filters and handler.level <= logging.INFO


def configure(level: str) -> None:
    """Log ``level`` and above to stderr, batched; skip the per-record work nobody reads."""
    # The logging HOWTO's "Optimization": fields the format does not show are not gathered (the
    # caller's file and line is a walk up the stack for every record).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    global _installed
    handler = BufferedStderr()
    handler.setFormatter(_Formatter())
    logging.basicConfig(level=level, handlers=[handler])
    _installed = handler if logging.getLogger().handlers == [handler] else None
