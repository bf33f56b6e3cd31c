"""Log output: one line per event, plain or JSON (UJUMBE_LOG_FORMAT=json).

A JSON line has ``timestamp`` (UTC, ISO 8601), ``level``, ``logger`` and
``message``, plus ``request_id`` and ``message_id`` when known, for a log
system to correlate. ``request_id`` is set per HTTP request by the request log
(ujumbe/http/app.py); ``message_id`` comes from ``extra={"message_id": ...}``
or from ``message_id_var`` set around work on one message. Line breaks inside
a message (tracebacks) stay inside its one line. Nothing here adds data: what
is logged is what the code chose to log, which never includes secrets.

A message's life, one line per event (accepted, submitted, send failed,
receipt, callback attempt), goes to the ``ujumbe.messages`` logger at DEBUG
through ``message_event``: off unless UJUMBE_LOG_MESSAGES=on (or
UJUMBE_LOG_LEVEL=DEBUG), because a JSON line costs ~15 µs and a message makes
four of them (bench/RESULTS.md, "Message lines"). Their fields (``event``,
``connector``, ``state`` ...) are JSON fields; they never hold a text, a
number's text body or a credential.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import time

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
message_id_var: contextvars.ContextVar[str | int | None] = contextvars.ContextVar("message_id", default=None)

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"

ON = ("1", "on", "true", "yes")
messages = logging.getLogger("ujumbe.messages")


def tracing() -> bool:
    """Whether message lines are logged (check once per batch on a hot path)."""
    return messages.isEnabledFor(logging.DEBUG)


def message_event(message_id: int | str | None, event: str, text: str = "", **fields: object) -> None:
    """One line of a message's life: ``message 42 submitted on smsc1 ...``,
    with ``message_id``, ``event`` and ``fields`` as JSON fields."""
    if not messages.isEnabledFor(logging.DEBUG):
        return
    fields["event"] = event
    messages.debug("message %s %s%s", message_id if message_id is not None else "-", event,
                   f" {text}" if text else "", extra={"message_id": message_id, "fields": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            line["request_id"] = request_id
        message_id = getattr(record, "message_id", None) or message_id_var.get()
        if message_id:
            line["message_id"] = str(message_id)
        fields = getattr(record, "fields", None)
        if fields:
            for key, value in fields.items():
                if value is not None and key not in line:
                    line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """The plain format, with a traceback's lines folded into its one line."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " | ")


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Set up the root logger from UJUMBE_LOG_LEVEL and UJUMBE_LOG_FORMAT (plain | json)."""
    level = level or os.environ.get("UJUMBE_LOG_LEVEL", "INFO")
    fmt = (fmt or os.environ.get("UJUMBE_LOG_FORMAT", "plain")).strip().lower()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter(PLAIN))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    on = os.environ.get("UJUMBE_LOG_MESSAGES", "").strip().lower() in ON
    messages.setLevel(logging.DEBUG if on else logging.NOTSET)  # NOTSET: as the root (DEBUG logs them too)
