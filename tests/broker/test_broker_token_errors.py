"""Token endpoint errors (RFC 6749 §5.2, §4.1.3; RFC 7636 §4.6) through HTTP.

Every error is JSON with ``Cache-Control: no-store``; ``invalid_client`` after HTTP Basic is
401 with ``WWW-Authenticate`` (RFC 6749 §5.2). Codes are single-use and short-lived.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from e2e.harness import DemoThread

from .broker_checks import assert_clean, login_code, token

pytestmark = pytest.mark.slow


def _error(r: httpx.Response, status: int, error: str) -> dict[str, str]:
    assert r.status_code == status, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"].startswith("application/json")
    assert_clean(r.text)
    body: dict[str, str] = r.json()
    assert body["error"] == error, body
    return body


def _form(demo: DemoThread, code: str, verifier: str, **over: str) -> dict[str, str]:
    f = {"grant_type": "authorization_code", "code": code,
         "redirect_uri": demo.info["redirect_uri"], "code_verifier": verifier}
    f.update(over)
    return {k: v for k, v in f.items() if v != ""}


def test_wrong_secret(demo: DemoThread) -> None:
    code, verifier, _ = login_code(demo)
    r = token(demo, _form(demo, code, verifier), auth=(demo.info["client_id"], "wrong"))
    _error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].lower().startswith("basic")
    r = token(demo, _form(demo, code, verifier), auth=("unknown-client", "x"))
    _error(r, 401, "invalid_client")
    r = token(demo, _form(demo, code, verifier), auth=None)
    _error(r, 401, "invalid_client")
    # the right client can still redeem the code: failed authentication does not burn it
    assert token(demo, _form(demo, code, verifier)).status_code == 200


def test_reused_code(demo: DemoThread) -> None:
    code, verifier, _ = login_code(demo)
    first = token(demo, _form(demo, code, verifier))
    assert first.status_code == 200
    _error(token(demo, _form(demo, code, verifier)), 400, "invalid_grant")


def test_wrong_redirect_uri(demo: DemoThread) -> None:
    code, verifier, _ = login_code(demo)
    _error(token(demo, _form(demo, code, verifier, redirect_uri="https://other.example/cb")),
           400, "invalid_grant")
    # the failed attempt consumed the code (a code works at most once)
    _error(token(demo, _form(demo, code, verifier)), 400, "invalid_grant")


def test_missing_redirect_uri(demo: DemoThread) -> None:
    code, verifier, _ = login_code(demo)
    _error(token(demo, _form(demo, code, verifier, redirect_uri="")), 400, "invalid_grant")


def test_wrong_verifier(demo: DemoThread) -> None:
    code, _verifier, _ = login_code(demo)
    _error(token(demo, _form(demo, code, "x" * 64)), 400, "invalid_grant")
    code, _verifier, _ = login_code(demo)
    _error(token(demo, _form(demo, code, "")), 400, "invalid_request")  # verifier missing


def test_code_of_another_client(demo: DemoThread) -> None:
    redirect = "https://other-client.example/cb"
    cid, secret = demo.add_client("demo", auth_method="client_secret_basic",
                                  redirect_uris=[redirect])
    assert secret is not None
    code, verifier, _ = login_code(demo)  # issued to the demo client
    r = token(demo, _form(demo, code, verifier, redirect_uri=redirect), auth=(cid, secret))
    _error(r, 400, "invalid_grant")


@pytest.fixture
def later(demo: DemoThread) -> Iterator[list[float]]:
    """Shift the broker's clock (ProviderService.clock) forward — no waiting."""
    rt = demo.demo.runtime
    assert rt is not None
    offset = [0.0]
    original = rt.service.clock
    rt.service.clock = lambda: time.time() + offset[0]
    try:
        yield offset
    finally:
        rt.service.clock = original


def test_expired_code(demo: DemoThread, later: list[float]) -> None:
    code, verifier, _ = login_code(demo)
    later[0] = 61.0  # AUTH_CODE_MAX_LIFETIME = 60 s
    _error(token(demo, _form(demo, code, verifier)), 400, "invalid_grant")
    # control: with the clock just before expiry a fresh code still works
    later[0] = 0.0
    code, verifier, _ = login_code(demo)
    later[0] = 50.0
    assert token(demo, _form(demo, code, verifier)).status_code == 200


def test_wrong_grant_type(demo: DemoThread) -> None:
    code, verifier, _ = login_code(demo)
    for grant in ("client_credentials", "refresh_token", "password"):
        _error(token(demo, _form(demo, code, verifier, grant_type=grant)), 400,
               "unsupported_grant_type")
    _error(token(demo, _form(demo, "", verifier)), 400, "invalid_request")  # no code


def test_wrong_content_type(demo: DemoThread) -> None:
    code, verifier, _ = login_code(demo)
    body = json.dumps(_form(demo, code, verifier))
    r = token(demo, content=body, headers={"content-type": "application/json"})
    _error(r, 400, "invalid_request")
    r = token(demo, content=body, headers={"content-type": "text/plain"})
    _error(r, 400, "invalid_request")


def test_duplicate_parameter_in_body(demo: DemoThread) -> None:
    code, verifier, _ = login_code(demo)
    form = _form(demo, code, verifier)
    body = httpx.QueryParams([*form.items(), ("code", code)])
    r = token(demo, content=str(body),
              headers={"content-type": "application/x-www-form-urlencoded"})
    _error(r, 400, "invalid_request")


def test_get_is_not_allowed(demo: DemoThread) -> None:
    from e2e.harness import ca_context

    r = httpx.get(f"{demo.info['issuer']}/token", verify=ca_context(demo.info))
    assert r.status_code == 405
    assert_clean(r.text)


@pytest.mark.parametrize("body", [
    b"grant_type=authorization_code&code=%ff%fe",  # not UTF-8
    "&".join(f"f{i}=1" for i in range(100)).encode(),  # too many fields
])
def test_hostile_bodies_are_refused_cleanly(demo: DemoThread, body: bytes) -> None:
    r = token(demo, content=body,
              headers={"content-type": "application/x-www-form-urlencoded"})
    _error(r, 400, "invalid_request")


def test_a_body_over_16_kib_is_413(demo: DemoThread) -> None:
    """Larger than any token request: refused before the endpoint reads it (RFC 9110
    §15.5.14), in the token endpoint's own error format."""
    body = b"grant_type=authorization_code&code=" + b"x" * 20_000
    r = token(demo, content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    _error(r, 413, "invalid_request")
    assert r.headers["connection"] == "close"
