"""web.broker_app.redirect and json_response answer exactly like Starlette's RedirectResponse
and JSONResponse (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse, RedirectResponse

from healthid_broker.web.broker_app import json_response, redirect

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


_HEADER_NAMES = st.sampled_from(["Cache-Control", "cache-control", "Pragma", "Content-Type",
                                 "content-length", "WWW-Authenticate", "Allow"])


@settings(max_examples=300)
@given(st.sampled_from([200, 201, 204, 304, 400, 401, 404, 405, 500, 503]),
       st.none() | st.dictionaries(_HEADER_NAMES, st.text(alphabet="ab =\"/0", max_size=8),
                                   max_size=4),
       st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.integers(), max_size=3))
def test_json_response_is_starlettes(status: int, headers: dict[str, str] | None,
                                     content: dict[str, Any]) -> None:
    ours, theirs = json_response(content, status, headers), JSONResponse(content, status, headers)
    assert ours.status_code == theirs.status_code
    assert ours.raw_headers == theirs.raw_headers
    assert ours.body == theirs.body
