"""Statement cache: gematik A_23039 (12 h re-fetch, 24 h / exp hard limits) and the
A_22861 unknown-kid re-fetch with its per-entity rate limit — all on a fake clock."""

from __future__ import annotations

import pytest

from healthid_broker.crypto.jose import sign_jws
from healthid_broker.federation.cache import StatementCache
from healthid_broker.federation.errors import (
    FetchError,
    StatementError,
    TrustChainError,
    UnknownKey,
)
from healthid_broker.federation.statements import EntityStatement, decode_statement
from healthid_broker.federation.trust_chain import ChainResolver

from .builder import T0, new_key, three_hop, two_hop

pytestmark = pytest.mark.anyio

H = 3600.0
TA = "https://ta.example.org"
INT = "https://int.example.org"
RP = "https://rp.example.com"
KEY = ("configuration", "https://x.example")


def stmt(iat: float, lifetime: float = 48 * H, tag: str = "") -> EntityStatement:
    k = new_key()
    claims = {"iss": "https://x.example", "sub": "https://x.example", "iat": int(iat),
              "exp": int(iat + lifetime), "jwks": {"keys": [k.public_dict()]}, "tag": tag}
    return decode_statement(sign_jws(claims, k, typ="entity-statement+jwt"))


class Fetcher:
    def __init__(self) -> None:
        self.calls = 0
        self.fail: Exception | None = None
        self.lifetime = 48 * H

    async def __call__(self, now: float) -> EntityStatement:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return stmt(now, self.lifetime, tag=f"v{self.calls}")


async def get(cache: StatementCache, f: Fetcher, now: float) -> EntityStatement:
    async def fetch() -> EntityStatement:
        return await f(now)

    return await cache.get(KEY, fetch, now)


async def test_fresh_entry_is_reused_before_12h() -> None:
    cache, f = StatementCache(), Fetcher()
    a = await get(cache, f, T0)
    b = await get(cache, f, T0 + 12 * H - 1)
    assert a is b and f.calls == 1


async def test_refetched_after_12h() -> None:
    cache, f = StatementCache(), Fetcher()
    await get(cache, f, T0)
    b = await get(cache, f, T0 + 12 * H)
    assert f.calls == 2 and b.claims["tag"] == "v2"
    c = await get(cache, f, T0 + 13 * H)  # the new one is fresh again
    assert c is b and f.calls == 2


async def test_failed_refetch_between_12h_and_24h_falls_back() -> None:
    cache, f = StatementCache(), Fetcher()
    a = await get(cache, f, T0)
    f.fail = FetchError("down")
    assert await get(cache, f, T0 + 13 * H) is a
    assert await get(cache, f, T0 + 24 * H - 1) is a
    assert f.calls == 3  # it kept trying


async def test_invalid_refetch_is_not_papered_over() -> None:
    cache, f = StatementCache(), Fetcher()
    await get(cache, f, T0)
    f.fail = StatementError("signature does not verify")
    with pytest.raises(StatementError):
        await get(cache, f, T0 + 13 * H)


async def test_never_used_after_24h() -> None:
    cache, f = StatementCache(), Fetcher()
    await get(cache, f, T0)
    f.fail = FetchError("down")
    with pytest.raises(FetchError):
        await get(cache, f, T0 + 24 * H)
    assert cache.lookup(KEY, T0 + 24 * H) is None


async def test_never_used_past_exp() -> None:
    cache, f = StatementCache(), Fetcher()
    f.lifetime = 2 * H  # like the reference IdP's 2 h entity configuration
    await get(cache, f, T0)
    assert f.calls == 1
    b = await get(cache, f, T0 + 2 * H)  # exp reached although younger than 12 h
    assert f.calls == 2 and b.claims["tag"] == "v2"
    f.fail = FetchError("down")
    with pytest.raises(FetchError):
        await get(cache, f, T0 + 4 * H)  # cached one expired: no fallback


def test_refetch_rate_limit_per_entity() -> None:
    cache = StatementCache()
    assert cache.allow_refetch("https://a", T0)
    assert not cache.allow_refetch("https://a", T0 + 59)
    assert cache.allow_refetch("https://b", T0 + 59)  # per entity
    assert cache.allow_refetch("https://a", T0 + 60)


def test_capacity_evicts_oldest() -> None:
    cache = StatementCache(max_entries=2)
    for i in range(3):
        cache.put(("configuration", f"e{i}"), stmt(T0), T0 + i)
    assert len(cache) == 2
    assert cache.lookup(("configuration", "e0"), T0 + 3) is None


# --------------------------------------------------------------------------- via the resolver


async def test_resolver_uses_cache_and_rules() -> None:
    fed = two_hop()
    res = ChainResolver(fed.http, [fed.anchor(TA)], clock=fed.clock)
    await res.resolve(RP)
    n = len(fed.http.calls)
    fed.clock.advance(11 * H)
    await res.resolve(RP)
    assert len(fed.http.calls) == n  # all from cache
    fed.clock.advance(2 * H)  # 13 h: re-fetch; servers down → fall back
    for e in fed.entities.values():
        e.down = True
    chain = await res.resolve(RP)
    assert len(fed.http.calls) > n and chain.anchor == TA
    fed.clock.advance(11 * H)  # 24 h: cached statements unusable
    with pytest.raises(TrustChainError) as ei:
        await res.resolve(RP)
    assert isinstance(ei.value.errors[0], FetchError)
    assert "HTTP 503" in str(ei.value)


async def test_unknown_kid_refetches_rotated_intermediate_once() -> None:
    """A_22861: the intermediate rotated its key after we cached its configuration; its
    statement about a new leaf names the new kid → re-fetch its configuration once."""
    fed = three_hop()
    res = ChainResolver(fed.http, [fed.anchor(TA)], clock=fed.clock)
    await res.resolve(RP)
    rotated = new_key()
    fed[INT].extra_keys.append(rotated)
    fed.add("https://rp2.example.com", hints=[INT])
    fed.link(INT, "https://rp2.example.com").sign_with = rotated
    chain = await res.resolve("https://rp2.example.com")
    assert chain.statements[1].kid == rotated.kid
    # a second rotation within 60 s is not re-fetched: the unknown kid fails
    rotated2 = new_key()
    fed[INT].extra_keys.append(rotated2)
    fed.add("https://rp3.example.com", hints=[INT])
    fed.link(INT, "https://rp3.example.com").sign_with = rotated2
    fed.clock.advance(30)
    with pytest.raises(TrustChainError) as ei:
        await res.resolve("https://rp3.example.com")
    assert isinstance(ei.value.errors[0], UnknownKey)
    fed.clock.advance(31)
    await res.resolve("https://rp3.example.com")


async def test_unknown_kid_refetches_subordinate_statement() -> None:
    """The leaf rotated; its fresh configuration names a kid the cached superior
    statement does not list → that statement is re-fetched once."""
    fed = two_hop()
    res = ChainResolver(fed.http, [fed.anchor(TA)], clock=fed.clock)
    await res.resolve(RP)
    fed[RP].key = new_key()
    res.cache.invalidate(("configuration", RP))  # e.g. expired; the statement is cached
    chain = await res.resolve(RP)
    assert chain.leaf.kid == fed[RP].key.kid
    assert [k.kid for k in chain.federation_keys()] == [fed[RP].key.kid]


async def test_refresh_flag_drops_cached_statements_rate_limited() -> None:
    fed = two_hop()
    res = ChainResolver(fed.http, [fed.anchor(TA)], clock=fed.clock)
    first = await res.resolve(RP)
    old_kid = fed[RP].key.kid
    fed[RP].key = new_key()
    assert (await res.resolve(RP)).leaf.kid == old_kid  # cached, still valid
    assert (await res.resolve(RP, refresh=True)).leaf.kid == fed[RP].key.kid
    fed[RP].key = new_key()
    fed.clock.advance(10)
    again = await res.resolve(RP, refresh=True)  # within 60 s: served from cache
    assert again.leaf.kid != fed[RP].key.kid
    assert first.leaf.kid == old_kid
