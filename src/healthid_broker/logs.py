"""The one logging path of the broker (T-31): structured, and redacting.

Every log record passes through :class:`RedactingFilter`, which masks anything that looks
like identity data — KVNRs, e-mail addresses, dates of birth, JWTs/JWEs — in the message
and in its arguments. Code must not log identity data in the first place; this filter is the
second line of defence, and ``tests/test_no_identity_data.py`` checks the first.
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
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", *, json_format: bool = True,
                  stream: Any = None) -> logging.Handler:
    """Route every logger (ours, uvicorn's, httpx's) through one redacting handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter() if json_format else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
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
