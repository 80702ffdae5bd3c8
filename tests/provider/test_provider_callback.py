"""The provider's upstream callback through the running demo (sandbox IdPs, real sockets).

- RFC 9207: the sandbox IdP sends no ``iss``; the test adds one to the IdP's real redirect.
  The chosen IdP's issuer passes; another IdP's is refused with the friendly page, a log
  line without personal data, and the IdP's code is never redeemed (mix-up defence).
- A login at the IdP while the broker is upgraded: its pending entry of the previous
  format ends on the "please start again" page (400), not a 500.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from urllib.parse import urlencode, urljoin

import httpx
import pytest

from e2e.harness import DemoThread, authorize_url, pkce_pair, query
from healthid_broker.demo.run import DemoConfig
from healthid_broker.login.login_store import PURPOSE_UPSTREAM
from healthid_broker.provider.service import ClientAuthenticator
from healthid_broker.sandbox.persons import PERSONS

pytestmark = pytest.mark.slow

_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"')
_FORM = re.compile(r'<form method="post" action="([^"]+)"')
PERSON = PERSONS[0]
PERSONAL = (PERSON.kvnr, PERSON.given_name, PERSON.family_name, PERSON.email,
            PERSON.birthdate.isoformat())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoThread]:
    t = DemoThread(DemoConfig(host="127.0.0.1", port=0,
                              data_dir=tmp_path_factory.mktemp("callback")))
    t.start()
    try:
        yield t
    finally:
        t.stop()


def _callback_url(demo: DemoThread, slug: str) -> str:
    """Log in at the sandbox IdP (gateway mode) and stop where the IdP sends the browser
    back to the broker's callback: that URL, unvisited."""
    info = demo.info
    _v, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": info["client_id"],
              "redirect_uri": info["redirect_uri"], "scope": "openid urn:telematik:versicherter",
              "state": secrets.token_hex(4), "nonce": secrets.token_hex(4),
              "code_challenge": challenge, "code_challenge_method": "S256",
              "idp_hint": demo.idp(slug)}
    callback = f"{info['broker_browser_base']}/demo/callback"
    with httpx.Client(follow_redirects=False, timeout=20) as b:
        r = b.get(authorize_url(info, params))
        for _ in range(8):
            if r.status_code in (302, 303):
                loc = urljoin(str(r.request.url), r.headers["location"])
                if loc.startswith(callback + "?"):
                    return loc
                r = b.get(loc)
                continue
            assert r.status_code == 200 and 'name="kvnr"' in r.text, r.status_code
            fields = dict(_HIDDEN.findall(r.text))
            fields.update({"kvnr": PERSON.kvnr, "action": "approve"})
            form = _FORM.search(r.text)
            assert form is not None
            r = b.post(form.group(1).replace("&amp;", "&"), data=fields)
    raise AssertionError("the IdP never sent the browser back")


def _with(url: str, **extra: str) -> str:
    return f"{url}&{urlencode(extra)}"


def _idp_codes(demo: DemoThread, slug: str) -> dict[str, object]:
    idp = next(i for i in demo.demo.sandbox.idps if i.entity_id.endswith("/" + slug))
    codes: dict[str, object] = idp.s.codes
    return codes


def test_callback_with_the_chosen_idps_iss_completes(demo: DemoThread) -> None:
    url = _callback_url(demo, "nordkasse")
    r = httpx.get(_with(url, iss=demo.idp("nordkasse")), follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"].startswith(demo.info["redirect_uri"] + "?")
    assert "code" in query(r.headers["location"])


def test_callback_with_another_idps_iss_is_refused(
    demo: DemoThread, caplog: pytest.LogCaptureFixture,
) -> None:
    url = _callback_url(demo, "nordkasse")
    idp_code = query(url)["code"]
    assert idp_code in _idp_codes(demo, "nordkasse")
    with caplog.at_level(logging.INFO):
        r = httpx.get(_with(url, iss=demo.idp("suedkasse"), lang="en"), follow_redirects=False)
    assert r.status_code == 400
    assert "did not come from the health insurer you chose" in r.text
    # the back link returns the person to the app with an OAuth error
    back = re.search(r'href="(' + re.escape(demo.info["redirect_uri"]) + r'\?[^"]+)"', r.text)
    assert back is not None
    assert query(back.group(1).replace("&amp;", "&"))["error"] == "access_denied"
    # the code was never sent to the token endpoint: the sandbox IdP still holds it
    assert idp_code in _idp_codes(demo, "nordkasse")
    lines = [rec.getMessage() for rec in caplog.records
             if rec.name == "healthid_broker.provider"]
    assert any("RFC 9207" in m and "suedkasse" in m for m in lines), lines
    assert any("failed (access_denied)" in m for m in lines), lines
    for text in (r.text, "\n".join(lines)):
        for value in PERSONAL:
            assert value not in text
    # the pending login is spent: the same answer with the right iss is too late now
    again = httpx.get(_with(url, iss=demo.idp("nordkasse"), lang="en"), follow_redirects=False)
    assert again.status_code == 400 and "Please start again." in again.text
    assert idp_code in _idp_codes(demo, "nordkasse")


def test_error_response_with_another_iss_is_refused_too(demo: DemoThread) -> None:
    url = _callback_url(demo, "nordkasse")
    state = query(url)["state"]
    base = url.split("?", 1)[0]
    answer = {"state": state, "error": "access_denied", "iss": "https://evil.example",
              "lang": "en"}
    r = httpx.get(f"{base}?{urlencode(answer)}", follow_redirects=False)
    # the friendly page, not a redirect that would pass the forged error on to the app
    assert r.status_code == 400
    assert "did not come from the health insurer you chose" in r.text


def test_pending_login_of_the_previous_release_asks_to_start_again(
    demo: DemoThread, caplog: pytest.LogCaptureFixture,
) -> None:
    from login.test_login_transaction import V1_UPSTREAM_PENDING

    rt = demo.demo.runtime
    assert rt is not None
    auth = rt.service.client_auth
    assert isinstance(auth, ClientAuthenticator)
    state = secrets.token_urlsafe(32)
    v1 = V1_UPSTREAM_PENDING.replace(b"https://b/x", demo.info["issuer"].encode())
    demo.run(auth.replay.put(PURPOSE_UPSTREAM, state, v1, 300))
    callback = f"{demo.info['broker_browser_base']}/demo/callback"
    with caplog.at_level(logging.WARNING):
        r = httpx.get(f"{callback}?{urlencode({'state': state, 'code': 'c', 'lang': 'en'})}",
                      follow_redirects=False)
    assert r.status_code == 400
    assert "The login took too long. Please start again." in r.text
    assert any("format version 1" in rec.getMessage() for rec in caplog.records)
