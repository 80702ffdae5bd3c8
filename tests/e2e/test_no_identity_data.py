"""Standing guard (T-01, T-31 in docs/toms.md; A_23050): after real logins nothing identity-bearing
is left anywhere the broker writes.

Every synthetic person of the sandbox logs in through the demo (all IdPs, hosted chooser
and gateway path, Redis transient store, logging at DEBUG through the project's own
``setup_logging`` into a file in the data directory). Then the database file, every file in
the data directory, the captured log and the broker's Redis entries are scanned for each
person's KVNR, given and family name, birthdate and e-mail — raw, URL-encoded and
JSON-escaped. The scanner proves it can find a planted value, so the guard can fail.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from healthid_broker.demo.run import DemoConfig
from healthid_broker.logs import setup_logging
from healthid_broker.sandbox.persons import PERSONS, Person

from .harness import SLUGS, DemoThread, authorize_url, browser_login, ca_context, pkce_pair

pytestmark = [pytest.mark.slow, pytest.mark.redis]

REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_PREFIX = "hidb-demo:"  # demo/run.py


# ------------------------------------------------------------------ the scanner


def _forms(value: str) -> set[str]:
    """The value as it could appear in a file, a log line, a URL or JSON."""
    return {
        value,
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value)[1:-1],  # ASCII-escaped (\u00e4)
        json.dumps(value, ensure_ascii=False)[1:-1],
    }


@dataclass(frozen=True)
class Needle:
    label: str  # "<kvnr-of-person>/<field>" — the label never contains the value itself
    pattern: re.Pattern[bytes]


def needles(persons: Iterable[Person]) -> list[Needle]:
    """One pattern per person and field. Values must stand alone (no letter, digit or
    base64 character on either side), so a short name like "Ida" is not "found" inside
    random key material or base64 text."""
    out: list[Needle] = []
    for idx, p in enumerate(persons):
        fields = {"kvnr": p.kvnr, "given_name": p.given_name, "family_name": p.family_name,
                  "birthdate": p.birthdate.isoformat(), "email": p.email}
        for name, value in fields.items():
            alts = b"|".join(re.escape(f.encode()) for f in sorted(_forms(value)))
            pat = re.compile(rb"(?<![A-Za-z0-9+/_-])(?:" + alts + rb")(?![A-Za-z0-9+/_-])")
            out.append(Needle(f"person#{idx}/{name}", pat))
    return out


def scan(blob: bytes, where: str, pins: list[Needle]) -> list[str]:
    return [f"{where}: {n.label}" for n in pins if n.pattern.search(blob)]


NEEDLES = needles(PERSONS)


@pytest.mark.parametrize("form", [
    lambda v: v, lambda v: quote(v, safe=""), quote_plus,
    lambda v: json.dumps(v)[1:-1], lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
])
def test_scanner_finds_planted_values(form: Any) -> None:
    """Self-check: each field of a person, in each encoding, is found."""
    p = PERSONS[4]  # Emine Yılmaz — non-ASCII family name
    for value in (p.kvnr, p.given_name, p.family_name, p.birthdate.isoformat(), p.email):
        blob = f'{{"x": "{form(value)}", "y": 1}}'.encode()
        assert scan(blob, "planted", NEEDLES), value
    # and embedded in a line of log text or a URL query
    assert scan(f"login of {p.kvnr} done".encode(), "log", NEEDLES)
    assert scan(f"/cb?name={quote_plus(p.family_name)}&x=1".encode(), "url", NEEDLES)


def test_scanner_ignores_random_material() -> None:
    blob = b"".join(secrets.token_bytes(4096) + secrets.token_urlsafe(4096).encode()
                    for _ in range(16))
    assert scan(blob, "random", NEEDLES) == []


# ------------------------------------------------------------------ the guard


@dataclass
class Env:
    demo: DemoThread
    log_path: Path
    written_keys: set[str]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("noid")
    log_path = data / "broker.log"
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    quiet = {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    stream = log_path.open("a", encoding="utf-8")
    handler = setup_logging("DEBUG", stream=stream)
    demo = DemoThread(DemoConfig(host="127.0.0.1", port=0, data_dir=data, redis_url=REDIS_URL))
    written: set[str] = set()
    try:
        demo.start()
        # Record which Redis keys this broker writes (purpose:index, sealed values).
        rt = demo.demo.runtime
        assert rt is not None
        backend: Any = rt.service.client_auth.replay.backend  # type: ignore[attr-defined]
        real_put = backend.put

        async def put(key: str, value: bytes, ttl_ms: int) -> None:
            written.add(REDIS_PREFIX + key)
            await real_put(key, value, ttl_ms)

        backend.put = put
        yield Env(demo, log_path, written)
    finally:
        demo.stop()
        root.removeHandler(handler)
        stream.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)


def _redis_blobs(keys: Iterable[str]) -> dict[str, bytes]:
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    out: dict[str, bytes] = {}
    for k in keys:
        v = r.get(k)
        if isinstance(v, bytes):
            out[k] = v
    return out


def test_many_logins_leave_no_identity_data(env: Env) -> None:
    demo, info = env.demo, env.demo.info
    found_mid_flight: list[str] = []
    for i, person in enumerate(PERSONS):
        slug = SLUGS[i % len(SLUGS)]
        verifier, challenge = pkce_pair()
        params = {"response_type": "code", "client_id": info["client_id"],
                  "redirect_uri": info["redirect_uri"],
                  "scope": "openid urn:telematik:versicherter urn:telematik:display_name "
                           "urn:telematik:given_name urn:telematik:family_name "
                           "urn:telematik:geburtsdatum urn:telematik:email "
                           "urn:telematik:alter urn:telematik:geschlecht",
                  "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        gateway = i % 2 == 1
        if gateway:
            params["idp_hint"] = demo.idp(slug)
        res = browser_login(authorize_url(info, params), info["redirect_uri"],
                            idp=None if gateway else demo.idp(slug), kvnr=person.kvnr)
        code = res.params["code"]
        # while the code is outstanding the claims sit in Redis — sealed
        found_mid_flight += scan(b"\n".join(_redis_blobs(env.written_keys).values()),
                                 "redis (in flight)", NEEDLES)
        r = httpx.post(f"{info['issuer']}/token", verify=ca_context(info),
                       auth=(info["client_id"], info["client_secret"]),
                       data={"grant_type": "authorization_code", "code": code,
                             "redirect_uri": info["redirect_uri"], "code_verifier": verifier})
        assert r.status_code == 200, r.text
        payload = r.json()["id_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        # the login really carried identity data (else the scan below proves nothing)
        assert claims["urn:telematik:claims:id"] == person.kvnr
        assert claims["urn:telematik:claims:email"] == person.email
        if i % 7 == 0:  # error paths must not leak either: a reused code
            again = httpx.post(f"{info['issuer']}/token", verify=ca_context(info),
                               auth=(info["client_id"], info["client_secret"]),
                               data={"grant_type": "authorization_code", "code": code,
                                     "redirect_uri": info["redirect_uri"],
                                     "code_verifier": verifier})
            assert again.status_code == 400
    # a login the person cancels at the IdP
    params = {"response_type": "code", "client_id": info["client_id"],
              "redirect_uri": info["redirect_uri"], "scope": "openid",
              "state": "s", "code_challenge": pkce_pair()[1], "code_challenge_method": "S256",
              "idp_hint": demo.idp("nordkasse")}
    res = browser_login(authorize_url(info, params), info["redirect_uri"], idp=None,
                        kvnr=PERSONS[0].kvnr, action="cancel")
    assert res.params["error"] == "access_denied"

    assert found_mid_flight == []
    for h in logging.getLogger().handlers:
        h.flush()

    leaks: list[str] = []
    files = sorted(p for p in Path(info["data_dir"]).rglob("*") if p.is_file())
    db_files = [p for p in files if p.suffix in (".db", ".sqlite", ".sqlite3")]
    assert db_files, "the demo's database file was not found in the data directory"
    assert env.log_path in files and env.log_path.stat().st_size > 0
    log_text = env.log_path.read_text(encoding="utf-8")
    assert "healthid_broker" in log_text  # DEBUG logging really went to the file
    for path in files:
        leaks += scan(path.read_bytes(), str(path.relative_to(info["data_dir"])), NEEDLES)
    # T-01: after redemption nothing of the logins is left in Redis
    assert env.written_keys, "the broker wrote nothing to Redis: wrong store?"
    remaining = _redis_blobs(env.written_keys)
    leaks += scan(b"\n".join(remaining.values()), "redis", NEEDLES)
    assert leaks == [], "identity data found:\n" + "\n".join(leaks)
    assert sorted(remaining) == [], "login data still in Redis after the logins completed"


def test_guard_detects_a_planted_leak(env: Env) -> None:
    """The same scan over the same data directory finds a value once it is planted."""
    data = Path(env.demo.info["data_dir"])
    planted = data / "planted.log"
    p = PERSONS[11]
    planted.write_text(json.dumps({"msg": f"user {p.given_name} {p.family_name}"}),
                       encoding="utf-8")
    try:
        hits = [h for f in data.rglob("*") if f.is_file()
                for h in scan(f.read_bytes(), f.name, NEEDLES)]
        assert hits == ["planted.log: person#11/given_name",
                        "planted.log: person#11/family_name"]
    finally:
        planted.unlink()
