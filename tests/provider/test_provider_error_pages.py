"""Every friendly error page the provider can ask for has its text in both languages."""

from __future__ import annotations

import ast
import inspect

from healthid_broker.provider import service
from healthid_broker.web.i18n import ERRORS


def _error_page_codes() -> set[str]:
    tree = ast.parse(inspect.getsource(service))
    codes = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "ErrorPage"):
            first = node.args[0]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), \
                "ErrorPage codes are literals, so this test can see them"
            codes.add(first.value)
    return codes


def test_every_error_page_code_has_a_text() -> None:
    codes = _error_page_codes()
    assert {"login_expired", "idp_mismatch", "idp_unavailable"} <= codes
    for lang, texts in ERRORS.items():
        missing = codes - set(texts)
        assert not missing, f"{lang}: no text for {sorted(missing)}"
