"""Which markers a test needs, read from its code at collection time.

A test needs

* ``postgres`` when it uses the ``pg_url`` fixture or its code names a PostgreSQL URL or port;
* ``redis`` when its code names a Redis URL, the Redis port or a redis-py client;
* ``slow`` when its code starts a process or a server (subprocesses, uvicorn, the demo or
  sandbox threads, a browser, a listening socket).

"Its code" is the test function, every fixture of its closure defined under ``tests/``, and —
followed transitively — every function, class or string constant under ``tests/`` those name
(``DemoThread``, ``REDIS_URL`` …). Comments and docstrings are ignored. The hook in
``tests/conftest.py`` adds ``postgres`` and ``redis`` from this; ``slow`` is written in the test
files (a reader should see it), and ``tests/test_markers.py`` fails for a test that needs a
marker and lacks it.
"""

from __future__ import annotations

import inspect
import io
import re
import textwrap
import tokenize
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

POSTGRES_FIXTURES = frozenset({"pg_url"})
# Added by the collection hook; `slow` is written in the test files.
AUTOMATIC = ("postgres", "redis")
# String constants a test names are searched for server URLs up to this length (longer ones
# are texts, such as sample test files).
MAX_CONSTANT = 200

_POSTGRES = re.compile(r"postgres(?:ql)?(?:\+\w+)?://|:5432\b|\bpsycopg\s*\.\s*connect\b")
_REDIS = re.compile(
    r"\brediss?://|\b6379\b|\bRedis\s*\(|\bredis\s*\.\s*(?:asyncio\s*\.\s*)?Redis\b"
    r"|\bStrictRedis\b|\bSentinel\s*\("
)
_SLOW = re.compile(
    r"\bsubprocess\s*\.\s*(?:run|Popen|call|check_call|check_output)\b|\bPopen\s*\("
    r"|\bcreate_subprocess_(?:exec|shell)\b|\b(?:run|open)_process\s*\("
    r"|\buvicorn\s*\.\s*(?:run|Server)\b|\bserve_forever\s*\(|\bstart_server\s*\("
    r"|\.\s*serve\s*\(|\bDemoThread\s*\(|\brun_main\s*\(|\bchromium\s*\.\s*launch\b"
    r"|\.\s*listen\s*\(\s*\d*\s*\)|\bmultiprocessing\b|\bos\s*\.\s*(?:fork|system|spawn\w*)\b"
)

_SKIP_TOKENS = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER)


@lru_cache(maxsize=4096)
def _code(source: str) -> tuple[str, str, frozenset[str]]:
    """The source's code without comments, docstrings and string literals (tokens joined by
    spaces), its string literals, and the names it uses."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source, source, frozenset(re.findall(r"[A-Za-z_]\w*", source))
    code: list[str] = []
    strings: list[str] = []
    names: set[str] = set()
    statement_start = True
    for i, tok in enumerate(tokens):
        if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            statement_start = True
        if tok.type in _SKIP_TOKENS:
            continue
        if tok.type == tokenize.STRING:
            nxt = next((t for t in tokens[i + 1:] if t.type != tokenize.COMMENT), None)
            if statement_start and (nxt is None or nxt.type in (tokenize.NEWLINE,
                                                                tokenize.ENDMARKER)):
                continue  # a docstring or another bare string statement
            strings.append(tok.string)
            code.append('""')
        else:
            code.append(tok.string)
            if tok.type == tokenize.NAME:
                names.add(tok.string)
        statement_start = False
    return " ".join(code), "\n".join(strings), frozenset(names)


def _unwrap(obj: Any) -> Any:
    return inspect.unwrap(obj) if callable(obj) else obj


class MarkerRules:
    """The rules above for the test code under ``tests_dir`` (cached per object)."""

    def __init__(self, tests_dir: Path) -> None:
        self.tests_dir = tests_dir.resolve()
        self._inside: dict[Any, bool] = {}
        self._flags: dict[Any, frozenset[str]] = {}

    def inside(self, obj: Any) -> bool:
        """Whether ``obj`` (a function, class or module) is defined under ``tests_dir``."""
        obj = _unwrap(obj)
        if obj not in self._inside:
            try:
                path = inspect.getsourcefile(obj)
            except TypeError:
                path = None
            self._inside[obj] = path is not None and Path(path).resolve().is_relative_to(
                self.tests_dir)
        return self._inside[obj]

    def _is_code_object(self, value: Any) -> bool:
        value = _unwrap(value)
        return (inspect.isfunction(value) or inspect.isclass(value)) and self.inside(value)

    def _node(self, obj: Any) -> tuple[str, str, list[Any]]:
        """The code of ``obj``, its string literals (with the values of the short string
        constants it names: URLs), and the functions and classes under ``tests_dir`` it
        names."""
        try:
            src = inspect.getsource(obj)
        except (OSError, TypeError):
            return "", "", []
        code, strings, names = _code(textwrap.dedent(src))
        # A function's own globals: conftest modules outside packages share one module name.
        scope: dict[str, Any] | None = getattr(obj, "__globals__", None)
        if scope is None:
            module = inspect.getmodule(obj)
            scope = vars(module) if module is not None else {}
        constants = [strings]
        children: list[Any] = []
        for name in sorted(names):
            value = scope.get(name)
            if value is None:
                continue
            if isinstance(value, str):
                if len(value) <= MAX_CONSTANT:
                    constants.append(value)
            elif isinstance(value, ModuleType):
                if self.inside(value):
                    children.extend(_unwrap(v) for k, v in vars(value).items()
                                    if k in names and self._is_code_object(v))
            elif self._is_code_object(value):
                children.append(_unwrap(value))
        return code, "\n".join(constants), children

    def flags(self, root: Any) -> frozenset[str]:
        """What the code reachable from ``root`` needs: ``postgres``, ``redis``, ``slow``."""
        root = _unwrap(root)
        if root not in self._flags:
            seen: set[Any] = set()
            queue = [root]
            codes: list[str] = []
            literals: list[str] = []
            while queue:
                obj = queue.pop()
                if obj in seen:
                    continue
                seen.add(obj)
                code, strings, children = self._node(obj)
                codes.append(code)
                literals.append(strings)
                queue.extend(children)
            code_text = "\n".join(codes)
            all_text = code_text + "\n" + "\n".join(literals)
            flags = set()
            if _POSTGRES.search(all_text):  # URLs are strings
                flags.add("postgres")
            if _REDIS.search(all_text):
                flags.add("redis")
            if _SLOW.search(code_text):  # calls are code
                flags.add("slow")
            self._flags[root] = frozenset(flags)
        return self._flags[root]

    def _fixture_funcs(self, item: pytest.Item) -> list[Any]:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            return []
        funcs = []
        for name in getattr(item, "fixturenames", ()):
            for fixturedef in info.name2fixturedefs.get(name, ()):
                func = getattr(fixturedef, "func", None)
                if func is not None and self.inside(func):
                    funcs.append(func)
        return funcs

    def needed(self, item: pytest.Item) -> set[str]:
        """The markers ``item`` needs."""
        function = getattr(item, "function", None)
        if function is None or not self.inside(function):
            return set()
        needed: set[str] = set()
        for root in (function, *self._fixture_funcs(item)):
            needed |= self.flags(root)
        if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            needed.add("postgres")
        return needed

    def add_automatic(self, items: Iterable[pytest.Item]) -> None:
        """Add the :data:`AUTOMATIC` markers an item needs and lacks."""
        for item in items:
            have = {m.name for m in item.iter_markers()}
            for name in AUTOMATIC:
                if name not in have and name in self.needed(item):
                    item.add_marker(getattr(pytest.mark, name))

    def missing(self, items: Iterable[pytest.Item]) -> list[str]:
        """``nodeid: marker`` for every marker an item needs and lacks."""
        out = []
        for item in items:
            have = {m.name for m in item.iter_markers()}
            out.extend(f"{item.nodeid}: {name}" for name in sorted(self.needed(item) - have))
        return out
