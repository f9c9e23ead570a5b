"""Logging for the web, worker and clock processes: one line per event, as text or JSON (LOG_FORMAT).

The standard library's logging, with two small formatters: no dependency, and every library's
records (uvicorn's, RQ's, redis-py's) come out in the same format as offload's own. An event's
structured fields travel on the record as `fields` (`log.info("request", extra=fields(...))`):

    text: 2026-03-01 09:41:00,004 offload.http INFO request method=GET route=/jobs/{job_id} status=200
    json: {"time": "2026-03-01T09:41:00.004Z", "level": "INFO", "logger": "offload.http",
           "message": "request", "method": "GET", "route": "/jobs/{job_id}", "status": 200}
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from contextvars import ContextVar
from typing import IO, Any, Literal

# The id of the request being served, added to every line logged while it is (service/web/observe.py).
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Our handler on the root logger, found by name so that configuring twice replaces it.
HANDLER_NAME = "offload"
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
LogFormat = Literal["text", "json"]


def fields(**values: Any) -> dict[str, Any]:
    """The `extra=` of a structured line: `log.info("job ended", extra=fields(job_id=..., ...))`."""
    return {"fields": values}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's structured fields, with the current request's id when there is one."""
    found: dict[str, Any] = dict(getattr(record, "fields", None) or {})
    request_id = request_id_var.get()
    if request_id is not None:
        found.setdefault("request_id", request_id)
    return found


class TextFormatter(logging.Formatter):
    """`time logger LEVEL message key=value ...`: readable, and still easy to grep or parse.

    A worker writes two lines a job: the time is formatted once a second (the milliseconds added to
    it), and numbers are written without going through JSON."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached, text = self._second  # one attribute: a thread never sees one second with another's text
        if second != cached:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"  # logging's default_msec_format, "%s,%03d"

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Fields go on the message's line, before any traceback that format() appends.
        line = f"{record.asctime} {record.name} {record.levelname} {record.message}"
        pairs = " ".join(f"{key}={_text_value(value)}" for key, value in record_fields(record).items())
        return f"{line} {pairs}" if pairs else line


# What makes a value not read back as one token: it is then quoted.
_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _text_value(value: Any) -> str:
    kind = type(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)  # as JSON writes it, without the encoder
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or _NEEDS_QUOTES.search(text):
        return json.dumps(text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            line.setdefault(key, value)  # a field never hides the line's own keys
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(log_format: LogFormat, level: str, stream: IO[str] | None = None) -> logging.Handler:
    """Send every logger's records through one handler on the root logger (stderr by default).

    Called once by each process's entry point; calling again replaces the handler it added, and
    leaves any other handler (a test's capture) where it is.
    """
    handler = logging.StreamHandler(stream)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(previous)
        previous.close()
    root.addHandler(handler)
    root.setLevel(level)
    # Neither format shows where a line was logged from, nor its thread or process: not collected
    # for each record (the logging HOWTO's "Optimization"), which a worker logs two of per job.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # uvicorn's default config gives its "uvicorn" logger (startup, errors) handlers of its own
    # and stops it propagating: hand its lines to ours, in the same format. "uvicorn.access" is
    # left as it is: the Procfile turns it off (`--no-access-log`), offload logs each request.
    server = logging.getLogger("uvicorn")
    server.handlers.clear()
    server.propagate = True
    return handler
