"""web.broker_app.redirect answers exactly like Starlette's RedirectResponse (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import RedirectResponse

from healthid_broker.web.broker_app import redirect

_URLISH = st.text(alphabet=st.sampled_from(
    "abcXYZ019_.-~:/%#?=@[]!$&'()*+,; \"<>\\^`{|}äé€\t"), max_size=60)


@settings(max_examples=500)
@given(st.one_of(_URLISH, st.text(max_size=40)).map(lambda s: "https://app.example/cb?" + s))
def test_same_answer_as_starlette(url: str) -> None:
    ours, theirs = redirect(url), RedirectResponse(url, status_code=302)
    assert ours.status_code == theirs.status_code == 302
    assert ours.raw_headers == theirs.raw_headers
    assert ours.body == theirs.body == b""


def test_a_plain_url_is_not_touched() -> None:
    url = "https://app.example/cb?code=abc-123_x.y~z&state=s%20t&iss=https%3A%2F%2Fb.example"
    assert redirect(url).headers["location"] == url
