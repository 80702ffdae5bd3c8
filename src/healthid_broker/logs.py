r"""The one logging path of the broker (T-31): structured, redacting, and unforgeable.

Every log record passes through :class:`RedactingFilter`, which masks anything that looks
like identity data — KVNRs, e-mail addresses, dates of birth, JWTs/JWEs — in the message
and in its arguments. Code must not log identity data in the first place; this filter is the
second line of defence, and ``tests/e2e/test_no_identity_data.py`` checks the first.

Log lines cannot be forged (T-27): a value from a request or an IdP that carries CR/LF, an
ANSI escape sequence or a quote must not start a line of its own or pass for another
field. Each record is exactly one line in both modes:

* JSON (``json_format=True``, the service default): one JSON object per line; besides what
  JSON escapes anyway (every control character below U+0020), DEL, the C1 controls and the
  Unicode line/paragraph separators are written as ``\uXXXX``;
* human-readable (``json_format=False``, the demo): every string argument has its
  backslashes and double quotes escaped, and every control character of the finished line
  (message, exception and stack text included) is written as ``\n``, ``\r``, ``\t``,
  ``\xNN`` or ``\uNNNN``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # compact JWS / JWE (three or five base64url parts)
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){2,4}"), "[jose]"),
    (re.compile(r"\b[A-Z]\d{9}\b"), "[kvnr]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b"), "[date]"),
)


# Control characters written as visible escapes in the human-readable line: C0 (line feed,
# carriage return, ESC of ANSI sequences, vertical tab, form feed, file/group/record
# separators…), DEL, C1 (NEL, CSI…) and the Unicode line and paragraph separators.
_LINE_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in range(0x20)},
    0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x7F: "\\x7f",
    **{c: f"\\u{c:04x}" for c in range(0x80, 0xA0)},
    0x2028: "\\u2028", 0x2029: "\\u2029",
}
# What json.dumps leaves as is but a reader may take for a line break or a terminal escape.
_JSON_ESCAPES: dict[int, str] = {
    0x7F: "\\u007f", **{c: f"\\u{c:04x}" for c in range(0x80, 0xA0)},
    0x2028: "\\u2028", 0x2029: "\\u2029",
}


def escape_line(text: str) -> str:
    """``text`` with every control character and line separator written as an escape."""
    return text.translate(_LINE_ESCAPES)


def escape_value(value: str) -> str:
    """A value for the human-readable line: backslashes and quotes escaped as well, so
    that it cannot close a quoted field it sits in."""
    return value.replace("\\", "\\\\").replace('"', '\\"').translate(_LINE_ESCAPES)


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        record.msg = redact(msg)
        record.args = None
        if record.exc_info:
            # Exception text is rendered by the formatter; replace it with a redacted copy.
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = redact(exc_text)
        return True


class EscapingFilter(logging.Filter):
    """Human-readable mode: escapes every string argument before the message is built
    (runs before :class:`RedactingFilter`, which merges the arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(escape_value(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, dict):
            record.args = {k: escape_value(v) if isinstance(v, str) else v
                           for k, v in args.items()}
        return True


class LineFormatter(logging.Formatter):
    """``LEVEL logger: message`` — the whole record on one line (control characters of the
    message, exception and stack text escaped)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return escape_line(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False).translate(_JSON_ESCAPES)


def setup_logging(level: str = "INFO", *, json_format: bool = True,
                  stream: Any = None) -> logging.Handler:
    """Route every logger (ours, uvicorn's, httpx's) through one redacting handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if not json_format:
        handler.addFilter(EscapingFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json_format else LineFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # httpx logs full URLs at INFO (which may carry codes); keep it at WARNING.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    return handler
