"""The web UI people see, driven in a real browser (Debian's chromium via Playwright):
the whole demo journey, German and English, keyboard use of the hosted chooser, the
security headers as the browser enforces them (T-21), and friendly error pages (T-27)."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from healthid_broker.crypto.keys import LocalCA
from healthid_broker.sandbox.persons import PERSONS
from healthid_broker.upstream.idp_list import IdpEntry

from .conftest import RunningDemo, Session

pytestmark = pytest.mark.slow

PERSON = next(p for p in PERSONS if p.kvnr == "W112233448")  # Wiebke Janßen: ß in the name
SANDBOX_STATIC = Path(__file__).parents[2] / "src/healthid_broker/sandbox/static"

DE = {
    "login": "Mit GesundheitsID anmelden", "title": "Mit GesundheitsID anmelden",
    "search": "Krankenversicherung suchen", "picker": "Testperson wählen",
    "approve": "Anmelden und freigeben", "banner": "nicht für den Produktivbetrieb",
    "welcome": "Angemeldet", "gkv": "gesetzliche Krankenversicherung",
}
EN = {
    "login": "Log in with GesundheitsID", "title": "Log in with GesundheitsID",
    "search": "Search for your insurer", "picker": "Choose a test person",
    "approve": "Sign in and share", "banner": "not for production",
    "welcome": "Logged in", "gkv": "statutory health insurance",
}


def idp_names(demo: RunningDemo) -> dict[str, str]:
    """slug -> display name, as the sandbox announces them."""
    return {i["entity_id"].rsplit("/", 1)[1]: i["name"]
            for i in demo.demo.sandbox.info()["idps"]}


def claims_table(page: Page) -> dict[str, str]:
    rows = page.locator("#claims tr")
    return {rows.nth(i).locator("th").inner_text(): rows.nth(i).locator("td").inner_text()
            for i in range(rows.count())}


def open_chooser(s: Session, demo: RunningDemo, texts: dict[str, str], query: str = "") -> None:
    s.page.goto(demo.info["demo_app"] + query)
    s.page.get_by_role("link", name=texts["login"]).click()
    expect(s.page).to_have_url(re.compile(r"/demo/authorize\?"))
    expect(s.page.get_by_role("heading", level=1)).to_have_text(texts["title"])


def pick_person_and_finish(s: Session, texts: dict[str, str], slug: str,
                           picker: dict[str, str] | None = None) -> dict[str, str]:
    """On the sandbox IdP's picker (in ``picker``'s language, if given) choose PERSON."""
    page = s.page
    expect(page).to_have_url(re.compile(rf"/idp/{slug}/auth\?"))
    banner = page.get_by_role("alert")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("SANDBOX")
    page.locator(f"#p-{PERSON.kvnr}").check()
    if picker is not None:
        expect(page).to_have_title(re.compile(picker["picker"]))
        expect(banner).to_contain_text(picker["banner"])
        page.get_by_role("button", name=picker["approve"]).click()
    else:
        page.locator("button[value=approve]").click()
    expect(page).to_have_url(re.compile(r"/app/callback\?code="))
    expect(page.locator("#welcome")).to_have_text(texts["welcome"])
    return claims_table(page)


def assert_person_claims(claims: dict[str, str]) -> None:
    assert claims["urn:telematik:claims:given_name"] == PERSON.given_name
    assert claims["urn:telematik:claims:family_name"] == PERSON.family_name
    assert claims["urn:telematik:claims:display_name"] == PERSON.display_name
    assert claims["urn:telematik:claims:id"] == PERSON.kvnr
    assert claims["urn:telematik:claims:email"] == PERSON.email
    assert claims["birthdate"] == PERSON.birthdate.isoformat()
    assert claims["acr"] == "gematik-ehealth-loa-substantial"


def assert_screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


# ---------------------------------------------------------------- 1. the whole journey


def test_demo_journey_in_german(running_demo: RunningDemo,
                                open_session: Callable[..., Session], tmp_path: Path) -> None:
    s = open_session("de-DE")
    page = s.page
    open_chooser(s, running_demo, DE)
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.locator(".for-app")).to_contain_text("Demo-App")
    names = idp_names(running_demo)
    buttons = page.locator("#idp-list button.idp")
    expect(buttons).to_have_count(len(names))
    for name in names.values():
        expect(page.get_by_role("button", name=re.compile(re.escape(name)))).to_be_visible()
    expect(buttons.first).to_contain_text(DE["gkv"])
    assert_screenshot(page, tmp_path / "chooser-de.png")

    # Search filters as the user types (part of a name, any case, umlauts included).
    search = page.get_by_label(DE["search"])
    search.fill("SÜD")
    expect(page.get_by_role("button", name=re.compile(names["suedkasse"]))).to_be_visible()
    expect(page.locator("#idp-list li:visible")).to_have_count(1)
    search.fill("")
    expect(page.locator("#idp-list li:visible")).to_have_count(len(names))
    search.fill("nord")
    expect(page.locator("#idp-list li:visible")).to_have_count(1)
    page.get_by_role("button", name=re.compile(names["nordkasse"])).click()

    claims = pick_person_and_finish(s, DE, "nordkasse", DE)
    assert_person_claims(claims)
    expect(page.locator("html")).to_have_attribute("lang", "de")
    assert_screenshot(page, tmp_path / "result-de.png")
    assert s.console.clean() == []


@pytest.fixture
def https_logo_server(running_demo: RunningDemo, tmp_path: Path) -> Iterator[str]:
    """An https origin (certificate from the demo CA) serving the sandbox's logo files, as
    an insurer's web server would serve the logo_uri of the federation's IdP list."""
    ca_dir = Path(running_demo.info["data_dir"]) / "ca"
    ca = LocalCA.load(ca_dir / "ca.pem", ca_dir / "ca.key")
    ca.issue_server_cert(["127.0.0.1"]).write(tmp_path / "logo.pem", tmp_path / "logo.key")
    handler = functools.partial(_QuietHandler, directory=str(SANDBOX_STATIC))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "logo.pem", tmp_path / "logo.key")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_chooser_shows_https_logos_allowed_by_its_csp(
        running_demo: RunningDemo, open_session: Callable[..., Session],
        https_logo_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Real IdP lists carry https logo URIs on the insurers' hosts; the chooser must show
    them, i.e. its CSP must allow exactly those origins. (The sandbox announces http
    logos, which the IdP-list parser drops, so the plain demo shows names only.)"""
    upstream = running_demo.demo.runtime.service.upstream  # type: ignore[union-attr]
    real_idps = upstream.idps

    async def idps_with_https_logos() -> tuple[IdpEntry, ...]:
        entries = await real_idps()
        return tuple(dataclasses.replace(
            e, logo_uri=f"{https_logo_server}/{e.iss.rsplit('/', 1)[1]}.svg") for e in entries)

    monkeypatch.setattr(upstream, "idps", idps_with_https_logos)
    s = open_session("de-DE", ignore_https_errors=True)
    open_chooser(s, running_demo, DE)
    logos = s.page.locator("#idp-list button.idp img")
    expect(logos).to_have_count(len(idp_names(running_demo)))
    for i in range(logos.count()):
        img = logos.nth(i)
        expect(img).to_be_visible()
        assert img.get_attribute("alt") == ""  # decorative: the name is the button's label
        img.evaluate("i => i.decode()")
        assert img.evaluate("i => i.complete && i.naturalWidth > 0"), img.get_attribute("src")
    assert_screenshot(s.page, tmp_path / "chooser-logos.png")
    assert s.console.clean() == []


# ---------------------------------------------------------------- 2. English


@pytest.mark.parametrize("how", ["accept-language", "ui_locales"])
def test_demo_journey_in_english(how: str, running_demo: RunningDemo,
                                 open_session: Callable[..., Session], tmp_path: Path) -> None:
    # accept-language: the browser asks for English everywhere. ui_locales: the app asks
    # for English (demo app ?lang=en -> ui_locales=en) while the browser prefers German.
    s = open_session("en-US" if how == "accept-language" else "de-DE")
    page = s.page
    open_chooser(s, running_demo, EN, "?lang=en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator(".for-app")).to_have_text(re.compile(r"Login for\s+Demo-App"))
    expect(page.locator("#idp-list button.idp").first).to_contain_text(EN["gkv"])
    assert_screenshot(page, tmp_path / f"chooser-en-{how}.png")
    names = idp_names(running_demo)
    page.get_by_label(EN["search"]).fill("süd")
    page.get_by_role("button", name=re.compile(names["suedkasse"])).click()
    # The sandbox picker follows the browser's Accept-Language; ui_locales is not passed on
    # to the IdP (reported), so with a German browser only the broker's pages are English.
    claims = pick_person_and_finish(s, EN, "suedkasse",
                                    EN if how == "accept-language" else None)
    assert_person_claims(claims)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert s.console.clean() == []


def test_chooser_language_switch(running_demo: RunningDemo,
                                 open_session: Callable[..., Session]) -> None:
    s = open_session("de-DE")
    open_chooser(s, running_demo, DE)
    link = s.page.get_by_role("link", name="English")
    expect(link).to_have_attribute("hreflang", "en")
    link.click()
    expect(s.page.get_by_role("heading", level=1)).to_have_text(EN["title"])
    expect(s.page.locator("html")).to_have_attribute("lang", "en")
    s.page.get_by_role("link", name="Deutsch").click()
    expect(s.page.get_by_role("heading", level=1)).to_have_text(DE["title"])
    assert s.console.clean() == []


# ---------------------------------------------------------------- 3. keyboard and a11y


def _focused(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("""() => {
        const e = document.activeElement;
        const st = getComputedStyle(e);
        return {tag: e.tagName.toLowerCase(), id: e.id, text: e.innerText || "",
                value: e.value || "", focusVisible: e.matches(":focus-visible"),
                outline: st.outlineStyle + " " + st.outlineWidth, border: st.borderColor};
    }""")
    return result


def test_chooser_keyboard_and_accessibility(running_demo: RunningDemo,
                                            open_session: Callable[..., Session]) -> None:
    s = open_session("de-DE")
    page = s.page
    open_chooser(s, running_demo, DE)
    names = list(idp_names(running_demo).values())

    # Accessible structure: language, a labelled search box, buttons named by the insurer.
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("searchbox", name=DE["search"])).to_be_visible()
    for name in names:
        expect(page.get_by_role("button", name=re.compile(re.escape(name)))).to_have_count(1)
    snapshot = page.locator("main").aria_snapshot()
    assert f'heading "{DE["title"]}" [level=1]' in snapshot
    assert f'searchbox "{DE["search"]}"' in snapshot
    for name in names:
        assert re.search(rf'button "{re.escape(name)} [^"]+"', snapshot), snapshot
    # Every visible form control has an accessible name.
    unnamed = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]),'
        + 'button, a')].filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
        && !(e.innerText || '').trim()).map(e => e.outerHTML)""")
    assert unnamed == []

    # Tab order: language link, search field, then each insurer; each focus is visible.
    page.locator("body").focus()
    page.keyboard.press("Tab")
    first = _focused(page)
    assert first["tag"] == "a" and first["text"] == "English"
    page.keyboard.press("Tab")
    assert _focused(page)["id"] == "idp-search"
    unfocused_border = page.locator("button.idp").first.evaluate(
        "e => getComputedStyle(e).borderColor")
    for name in names:
        page.keyboard.press("Tab")
        f = _focused(page)
        assert f["tag"] == "button" and name in f["text"]
        assert f["focusVisible"] and f["outline"].startswith("solid"), f
        assert f["border"] != unfocused_border, f

    # Search with the keyboard, Tab skips the filtered-out insurers, Enter chooses.
    page.keyboard.press("Shift+Tab")
    while _focused(page)["id"] != "idp-search":
        page.keyboard.press("Shift+Tab")
    page.keyboard.type("mittel")
    page.keyboard.press("Tab")
    f = _focused(page)
    assert f["tag"] == "button" and "Mittelland" in f["text"]
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/idp/mittelland-bkk/auth\?"))
    assert s.console.clean() == []


# ---------------------------------------------------------------- 4. security headers


def test_security_headers_enforced_by_the_browser(
        running_demo: RunningDemo, open_session: Callable[..., Session]) -> None:
    s = open_session("de-DE")
    page = s.page
    page.goto(running_demo.info["demo_app"])
    with page.expect_response(re.compile(r"/demo/authorize\?")) as resp_info:
        page.get_by_role("link", name=DE["login"]).click()
    headers = resp_info.value.headers
    csp = {d.strip().split(" ", 1)[0]: d.strip() for d in headers["content-security-policy"]
           .split(";")}
    assert csp["default-src"] == "default-src 'none'"
    assert csp["script-src"] == "script-src 'self'"
    assert csp["style-src"] == "style-src 'self'"
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    chooser_url = page.url

    # The page works under that policy: stylesheet applied, the script filters the list.
    # (to_have_css waits: the stylesheet may still be loading when the response is in.)
    expect(page.locator(".sandbox-banner")).to_have_css("background-color", "rgb(255, 213, 79)")
    page.get_by_label(DE["search"]).fill("privat")
    expect(page.locator("#idp-list li:visible")).to_have_count(1)
    assert s.console.clean() == []

    # An inline script and an inline event handler smuggled into the page do not run.
    def inject(route: Any) -> None:
        r = route.fetch()
        body = r.text().replace(
            "</main>", '<script>window.__inline = 1</script>'
            '<img src="data:," onerror="window.__handler = 1"></main>')
        route.fulfill(response=r, body=body)

    page.route(re.compile(r"/demo/authorize\?"), inject)
    page.goto(chooser_url)
    expect(page.get_by_role("heading", level=1)).to_have_text(DE["title"])
    assert page.evaluate("() => [window.__inline, window.__handler]") == [None, None]
    violations = [p for p in s.console.problems if "CSP-VIOLATION script-src" in p]
    assert len(violations) >= 2, s.console.problems
    page.unroute(re.compile(r"/demo/authorize\?"))

    # Framing is refused (clickjacking): the chooser never renders inside a frame.
    s.console.problems.clear()
    page.goto(running_demo.info["demo_app"])
    page.evaluate("""url => { const f = document.createElement('iframe');
        f.src = url; f.id = 'f'; document.body.appendChild(f); }""", chooser_url)
    for _ in range(50):  # the refusal is reported asynchronously
        if any("frame" in p.lower() for p in s.console.problems):
            break
        page.wait_for_timeout(100)
    assert any("frame" in p.lower() for p in s.console.problems), s.console.problems
    frame = page.frame_locator("#f")
    expect(frame.get_by_role("heading", name=DE["title"])).to_have_count(0)


# ---------------------------------------------------------------- 5. error pages


@pytest.mark.parametrize(("locale", "query", "title", "message"), [
    ("de-DE", "", "Die Anmeldung hat nicht geklappt", "Die Anwendung ist nicht bekannt."),
    ("de-DE", "&lang=en", "The login did not work", "The application is not known."),
    ("en-GB", "", "The login did not work", "The application is not known."),
])
def test_unknown_client_error_page(locale: str, query: str, title: str, message: str,
                                   running_demo: RunningDemo,
                                   open_session: Callable[..., Session]) -> None:
    s = open_session(locale)
    page = s.page
    base = running_demo.info["broker_browser_base"]
    url = (f"{base}/demo/authorize?response_type=code&client_id=no-such-client"
           f"&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&scope=openid&state=s{query}")
    response = page.goto(url)
    assert response is not None and 400 <= response.status < 500
    expect(page).to_have_title(title)
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator("main")).to_contain_text(message)
    expect(page.locator("main code")).to_have_text("invalid_client")
    text = page.locator("body").inner_text()
    for leak in ("Traceback", "Exception", "File \"", "no-such-client", "evil.example"):
        assert leak not in text
    # No way back to an unverified redirect_uri.
    assert page.locator("a[href*='evil.example']").count() == 0
    # Chromium reports the document's own 4xx status on the console; nothing else may appear.
    assert s.console.clean(ignore=lambda p: p.endswith(f"@ {url}")) == []


@pytest.mark.parametrize(("locale", "title", "message"), [
    ("de-DE", "Die Anmeldung hat nicht geklappt", "Diese Seite gibt es nicht."),
    ("en-US", "The login did not work", "This page does not exist."),
])
def test_not_found_page(locale: str, title: str, message: str, running_demo: RunningDemo,
                        open_session: Callable[..., Session]) -> None:
    s = open_session(locale)
    url = running_demo.info["broker_browser_base"] + "/demo/no-such-page"
    response = s.page.goto(url)
    assert response is not None and response.status == 404
    expect(s.page).to_have_title(title)
    expect(s.page.locator("main")).to_contain_text(message)
    assert "Traceback" not in s.page.content()
    assert s.console.clean(ignore=lambda p: p.endswith(f"@ {url}")) == []


@pytest.mark.parametrize(("locale", "texts", "title", "back", "failed"), [
    ("de-DE", DE, "Die Anmeldung hat nicht geklappt", "Zurück zur Anwendung",
     "Anmeldung fehlgeschlagen"),
    ("en-US", EN, "The login did not work", "Back to the application", "Login failed"),
])
def test_unreachable_idp_error_page_leads_back_to_the_app(
        locale: str, texts: dict[str, str], title: str, back: str, failed: str,
        running_demo: RunningDemo, open_session: Callable[..., Session]) -> None:
    s = open_session(locale)
    page = s.page
    open_chooser(s, running_demo, texts, "" if texts is DE else "?lang=en")
    # An insurer the broker cannot start a login with (not in the federation's IdP list).
    page.locator("button.idp").first.evaluate(
        "b => { b.value = 'https://127.0.0.1:9/idp/gone'; }")
    page.locator("button.idp").first.click()
    expect(page).to_have_title(title)  # the page title is the heading, nothing more
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.locator("main code")).to_have_text("idp_unavailable")
    link = page.get_by_role("link", name=back)
    expect(link).to_have_count(1)
    link.click()
    expect(page).to_have_url(re.compile(r"/app/callback\?error=temporarily_unavailable"))
    expect(page.get_by_role("heading", level=1)).to_have_text(failed)
    expect(page.locator("#error")).to_have_text("temporarily_unavailable")
    assert s.console.clean(ignore=lambda p: "status of 502" in p) == []
