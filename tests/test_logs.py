"""Log lines cannot be forged: values with CR/LF, ANSI escapes, Unicode line separators or
quotes reach the log only escaped, and every record is exactly one line — in the JSON mode
and in the demo's human-readable one."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.logs import setup_logging

FORGED = ('abc\r\nT12:00 INFO healthid_broker: login ok user="admin"'
          '\x1b[2J\x1b]0;t\x07\u2028x\x85')
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    yield stream, logging.getLogger("healthid_broker.test")
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])


def _lines(stream: io.StringIO) -> list[str]:
    text = stream.getvalue()
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    assert lines == text.splitlines()  # no other line boundary (\r, \v, \x85, \u2028…)
    for line in lines:
        assert not _CONTROL.search(line), line
    return lines


@pytest.mark.parametrize("json_format", [True, False])
def test_a_forged_value_stays_on_one_line(capture: tuple[io.StringIO, logging.Logger],
                                          json_format: bool) -> None:
    stream, log = capture
    setup_logging("INFO", json_format=json_format, stream=stream)
    log.info('callback from %s with state "%s"', "idp", FORGED)
    [line] = _lines(stream)
    if json_format:
        msg = json.loads(line)["msg"]
        assert msg == f'callback from idp with state "{FORGED}"'  # nothing lost
    else:
        assert line.startswith("INFO healthid_broker.test: callback from idp with state \"")
        # the value's quotes cannot close the field it sits in
        assert 'user=\\"admin\\"' in line and 'user="admin"' not in line
        assert "\\r\\nT12:00" in line and "\\x1b[2J" in line and "\\u2028" in line


@pytest.mark.parametrize("json_format", [True, False])
def test_exceptions_and_stacks_stay_on_one_line(capture: tuple[io.StringIO, logging.Logger],
                                                json_format: bool) -> None:
    stream, log = capture
    setup_logging("INFO", json_format=json_format, stream=stream)
    try:
        raise ValueError(FORGED)
    except ValueError:
        log.exception("failed for %s", FORGED)
    log.warning("with stack", stack_info=True)
    lines = _lines(stream)
    assert len(lines) == 2
    if json_format:
        first = json.loads(lines[0])
        assert "Traceback" in first["exc"] and "ValueError" in first["exc"]
        assert "with stack" in json.loads(lines[1])["msg"] and json.loads(lines[1])["stack"]
    else:
        assert "Traceback" in lines[0] and "\\n" in lines[0]


@pytest.mark.parametrize("json_format", [True, False])
def test_dict_arguments_and_non_strings(capture: tuple[io.StringIO, logging.Logger],
                                        json_format: bool) -> None:
    stream, log = capture
    setup_logging("INFO", json_format=json_format, stream=stream)
    log.info("%(a)s %(n)d", {"a": "x\ny", "n": 7})
    log.info("object %s", ValueError("a\nb"))  # str() of an object with a line break
    lines = _lines(stream)
    assert len(lines) == 2


@pytest.mark.parametrize("json_format", [True, False])
def test_identity_data_is_still_redacted(capture: tuple[io.StringIO, logging.Logger],
                                         json_format: bool) -> None:
    stream, log = capture
    setup_logging("INFO", json_format=json_format, stream=stream)
    log.info("person %s mail %s", "X110411675", "max@example.de")
    [line] = _lines(stream)
    assert "X110411675" not in line and "max@example.de" not in line
    assert "[kvnr]" in line and "[email]" in line


@settings(max_examples=200, deadline=None)
@given(st.text(), st.booleans())
def test_any_value_gives_exactly_one_line(value: str, json_format: bool) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        setup_logging("INFO", json_format=json_format, stream=stream)
        logging.getLogger("healthid_broker.test").warning("value %s end", value)
        [line] = _lines(stream)
        if json_format:
            assert json.loads(line)["msg"].endswith(" end")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
