"""Authorization endpoint errors (OIDC Core §3.1.2.6, RFC 6749 §4.1.2.1) through HTTP.

Before the client and its redirect URI are validated, errors are a page for the person and
never a redirect; afterwards they go to the registered redirect URI with ``state`` and
``iss`` (RFC 9207). No answer carries a stack trace or personal data.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e.harness import DemoThread, browser_login, query
from healthid_broker.sandbox.persons import PERSONS

from .broker_checks import assert_clean, authorize, base_params, redirect_params

pytestmark = pytest.mark.slow


def _page(r: object, status: int) -> str:
    import httpx

    assert isinstance(r, httpx.Response)
    assert r.status_code == status
    assert "location" not in r.headers, "must not redirect (RFC 6749 4.1.2.1)"
    assert r.headers["content-type"].startswith("text/html")
    assert_clean(r.text)
    return r.text


def test_unknown_client_id_is_a_page(demo: DemoThread) -> None:
    text = _page(authorize(demo, base_params(demo, client_id="nope")), 400)
    assert "invalid_client" in text


def test_unregistered_redirect_uri_is_a_page(demo: DemoThread) -> None:
    _page(authorize(demo, base_params(demo, redirect_uri="https://evil.example/cb")), 400)
    _page(authorize(demo, base_params(demo, redirect_uri=None)), 400)
    # a registered URI with something appended is a different URI (exact match)
    _page(authorize(demo, base_params(
        demo, redirect_uri=demo.info["redirect_uri"] + "?x=1")), 400)


def test_duplicate_client_or_redirect_is_a_page(demo: DemoThread) -> None:
    p = list(base_params(demo).items())
    _page(authorize(demo, [*p, ("redirect_uri", demo.info["redirect_uri"])]), 400)
    _page(authorize(demo, [*p, ("client_id", demo.info["client_id"])]), 400)


def test_unknown_application_is_a_page(demo: DemoThread) -> None:
    _page(authorize(demo, base_params(demo), short_key="no-such-app"), 404)


@pytest.mark.parametrize(("over", "error"), [
    ({"scope": "urn:telematik:versicherter"}, "invalid_scope"),  # openid missing
    ({"scope": None}, "invalid_scope"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type"),
    ({"response_type": None}, "unsupported_response_type"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"prompt": "none"}, "login_required"),
    ({"response_mode": "fragment"}, "invalid_request"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    ({"acr_values": "loa-low"}, "invalid_request"),
    ({"state": "s" * 2000}, "invalid_request"),
])
def test_redirected_errors(demo: DemoThread, over: dict[str, str | None], error: str) -> None:
    params = base_params(demo, **over)
    q = redirect_params(authorize(demo, params), demo.info["redirect_uri"])
    assert q["error"] == error
    assert q["iss"] == demo.info["issuer"]
    if "state" in params and len(params["state"]) <= 1024:
        assert q["state"] == params["state"]
    assert_clean(q.get("error_description", ""))


def test_scope_not_allowed_for_client_is_dropped(demo: DemoThread) -> None:
    """RFC 6749 §3.3: a known scope the client may not use is left out of the grant; the
    login goes on (the chooser), the token response names what was granted (tests/e2e)."""
    redirect = "https://narrow.example/cb"
    cid, _ = demo.add_client("demo", auth_method="client_secret_basic",
                             redirect_uris=[redirect], scopes=["openid"])
    params = base_params(demo, client_id=cid, redirect_uri=redirect)
    r = authorize(demo, params)
    assert r.status_code == 200 and 'name="tx"' in r.text


def test_public_client_needs_pkce(demo: DemoThread) -> None:
    redirect = "https://public-neg.example/cb"
    cid, _ = demo.add_client("demo", auth_method="none", redirect_uris=[redirect])
    params = base_params(demo, client_id=cid, redirect_uri=redirect, code_challenge=None,
                         code_challenge_method=None)
    q = redirect_params(authorize(demo, params), redirect)
    assert q["error"] == "invalid_request" and q["state"] == params["state"]


def test_duplicate_parameters_are_refused(demo: DemoThread) -> None:
    params = base_params(demo)
    for name in ("scope", "state", "nonce", "code_challenge", "response_type", "idp_hint"):
        items = [*params.items(), (name, params.get(name, "x")), (name, "other")]
        q = redirect_params(authorize(demo, items), demo.info["redirect_uri"])
        assert q["error"] == "invalid_request", name


def test_unknown_state_at_callback_is_a_friendly_page(demo: DemoThread) -> None:
    import httpx

    base = f"{demo.info['broker_browser_base']}/demo/callback"
    for params in ({"state": "unknown", "code": "c"}, {}, {"error": "access_denied"}):
        r = httpx.get(base, params=params, follow_redirects=False)
        text = _page(r, 400)
        assert "login_expired" in text


def test_idp_error_at_callback_is_access_denied(demo: DemoThread) -> None:
    """The person cancels at the IdP: the app gets access_denied with its state."""
    params = base_params(demo, idp_hint=demo.idp("suedkasse"))
    from e2e.harness import authorize_url

    res = browser_login(authorize_url(demo.info, params), demo.info["redirect_uri"],
                        idp=None, kvnr=PERSONS[0].kvnr, action="cancel")
    assert res.params["error"] == "access_denied"
    assert res.params["state"] == params["state"]
    assert res.params["iss"] == demo.info["issuer"]
    assert "code" not in res.params
    assert_clean(res.location)


def test_unknown_idp_hint_goes_back_to_the_app(demo: DemoThread) -> None:
    import httpx

    params = base_params(demo, idp_hint="https://unknown.example/idp")
    r = authorize(demo, params)
    assert r.status_code == 502 and "location" not in r.headers
    assert_clean(r.text)
    # the error page links back to the app with temporarily_unavailable and the state
    back = [a for a in httpx.Response(200, text=r.text).text.split('href="')[1:]
            if a.startswith(demo.info["redirect_uri"])]
    assert back, "the error page offers the way back to the application"
    q = query(back[0].split('"')[0].replace("&amp;", "&"))
    assert q["error"] == "temporarily_unavailable" and q["state"] == params["state"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(redirect=st.text(max_size=60), client_id=st.text(max_size=40))
def test_property_no_redirect_to_unregistered_uris(demo: DemoThread, redirect: str,
                                                   client_id: str) -> None:
    """Whatever client_id/redirect_uri arrive, the broker redirects only to a URI
    registered for that client, and never answers with a 5xx."""
    info = demo.info
    r = authorize(demo, base_params(demo, client_id=client_id or None,
                                    redirect_uri=redirect or None))
    assert r.status_code < 500
    if r.status_code in (301, 302, 303, 307, 308):
        assert client_id == info["client_id"] and redirect == info["redirect_uri"]
    assert_clean(r.text)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scope=st.lists(st.sampled_from([
    "openid", "urn:telematik:versicherter", "urn:telematik:alter", "profile", "email",
    "urn:telematik:unknown", "", "OPENID"]), max_size=5))
def test_property_scope_handling(demo: DemoThread, scope: list[str]) -> None:
    """With openid the login goes on (unknown values ignored, OIDC Core §3.1.2.1; scopes
    the client may not use dropped, RFC 6749 §3.3); without it invalid_scope at the
    registered redirect URI."""
    tokens = [s for s in " ".join(scope).split(" ") if s]
    params = base_params(demo, scope=" ".join(scope))
    r = authorize(demo, params)
    if "openid" in tokens:
        assert r.status_code == 200 and 'name="tx"' in r.text
    else:
        q = redirect_params(r, demo.info["redirect_uri"])
        assert q["error"] == "invalid_scope" and q["state"] == params["state"]
