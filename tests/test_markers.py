"""The markers ``postgres``, ``redis`` and ``slow`` say the truth (tests/marker_rules.py).

``./dev quick`` runs ``-m "not slow"``, CI machines without a server can deselect
``postgres``/``redis``: a test that starts processes or servers without ``slow``, or reaches a
server without its marker, breaks both.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from marker_rules import MarkerRules

TESTS = Path(__file__).parent


def test_every_collected_test_carries_the_markers_it_needs(request: pytest.FixtureRequest) -> None:
    missing = MarkerRules(TESTS).missing(request.session.items)
    assert not missing, "tests without the markers they need:\n" + "\n".join(missing)


SAMPLE_CONFTEST = '''
from pathlib import Path

import pytest

from marker_rules import MarkerRules

RULES = MarkerRules(Path(__file__).parent)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    RULES.add_automatic(items)


def pytest_collection_finish(session):
    for line in RULES.missing(session.items):
        print("MISSING", line)


@pytest.fixture
def pg_url():
    return "a database URL"


@pytest.fixture
def database(pg_url):
    return pg_url


@pytest.fixture
def server():
    import subprocess, sys
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    yield proc
    proc.wait()
'''

SAMPLE_TESTS = '''
import contextlib
import subprocess
import sys

import pytest

REDIS = "redis://127.0.0.1:6379/0"


def _spawn():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


@contextlib.contextmanager
def _running():
    _spawn()
    yield


class Harness:
    def start(self):
        _spawn()


def test_pg_fixture(pg_url):
    pass


def test_pg_through_another_fixture(database):
    pass


def test_pg_url_literal():
    assert "postgresql://postgres@127.0.0.1:5432/test"


def test_redis_constant():
    assert REDIS


def test_redis_client():
    import redis
    assert redis.Redis


def test_spawns_directly():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_spawns_through_a_helper():
    _spawn()


def test_spawns_through_a_context_manager():
    with _running():
        pass


def test_spawns_through_a_class():
    Harness().start()


def test_spawns_through_a_fixture(server):
    pass


@pytest.mark.slow
def test_spawns_and_says_so():
    _spawn()


def test_words_in_comments_and_docstrings_do_not_count():
    """subprocess.run([...]) and redis://127.0.0.1:6379 in a docstring."""
    # subprocess.Popen(...) uvicorn.run(app) postgresql://x in a comment
    assert True


def test_plain():
    assert 1 + 1 == 2
'''


@pytest.fixture
def sample(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(SAMPLE_CONFTEST)
    pytester.makepyfile(test_sample=SAMPLE_TESTS)
    pytester.makeini(textwrap.dedent("""
        [pytest]
        markers =
            postgres: sample
            redis: sample
            slow: sample
    """))
    return pytester


def test_missing_slow_markers_are_reported(sample: pytest.Pytester) -> None:
    result = sample.runpytest("--collect-only", "-q")
    missing = sorted(line.split("::", 1)[1] for line in result.outlines
                     if line.startswith("MISSING "))
    assert missing == [
        "test_spawns_directly: slow",
        "test_spawns_through_a_class: slow",
        "test_spawns_through_a_context_manager: slow",
        "test_spawns_through_a_fixture: slow",
        "test_spawns_through_a_helper: slow",
    ]


def test_postgres_and_redis_markers_are_added(sample: pytest.Pytester) -> None:
    items, _ = sample.inline_genitems()
    marked = {item.name: {m.name for m in item.iter_markers()} for item in items}
    assert {name for name, marks in marked.items() if "postgres" in marks} == {
        "test_pg_fixture", "test_pg_through_another_fixture", "test_pg_url_literal"}
    assert {name for name, marks in marked.items() if "redis" in marks} == {
        "test_redis_constant", "test_redis_client"}
    assert marked["test_plain"] == set()
    assert marked["test_words_in_comments_and_docstrings_do_not_count"] == set()


def test_deselecting_by_the_markers_works(sample: pytest.Pytester) -> None:
    result = sample.runpytest("--collect-only", "-q",
                              "-m", "not postgres and not redis and not slow")
    selected = sorted(line.split("::", 1)[1] for line in result.outlines
                      if line.startswith("test_sample.py::"))
    assert selected == [
        "test_plain",
        "test_spawns_directly",
        "test_spawns_through_a_class",
        "test_spawns_through_a_context_manager",
        "test_spawns_through_a_fixture",
        "test_spawns_through_a_helper",
        "test_words_in_comments_and_docstrings_do_not_count",
    ]
