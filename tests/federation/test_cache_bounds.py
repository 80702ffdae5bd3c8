"""The statement cache's two maps stay bounded whatever entity ids arrive (T-27)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.federation.cache import StatementCache

from .builder import T0
from .test_cache import stmt


def test_unknown_kid_records_stay_bounded_under_a_flood() -> None:
    cache = StatementCache(max_entries=100)
    for i in range(5000):  # all within the 60 s interval: none may be dropped as old
        assert cache.allow_refetch(f"https://flood.example/{i}", T0 + i / 1000)
        assert len(cache._refetches) <= 100
    # a recent entity is still rate limited
    assert not cache.allow_refetch("https://flood.example/4999", T0 + 5)


def test_statements_are_an_lru() -> None:
    cache = StatementCache(max_entries=2)
    cache.put(("configuration", "a"), stmt(T0), T0)
    cache.put(("configuration", "b"), stmt(T0), T0 + 1)
    assert cache.lookup(("configuration", "a"), T0 + 2) is not None  # a used: b goes next
    cache.put(("configuration", "c"), stmt(T0), T0 + 3)
    assert cache.lookup(("configuration", "b"), T0 + 4) is None
    assert cache.lookup(("configuration", "a"), T0 + 4) is not None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "lookup", "refetch"]),
                          st.text(max_size=30), st.integers(0, 100)), max_size=400),
       st.integers(1, 20))
def test_any_sequence_respects_the_bound(ops: list[tuple[str, str, int]], bound: int) -> None:
    cache = StatementCache(max_entries=bound)
    statement = stmt(T0)
    for op, entity, dt in ops:
        now = T0 + dt
        if op == "put":
            cache.put(("configuration", entity), statement, now)
        elif op == "lookup":
            cache.lookup(("configuration", entity), now)
        else:
            cache.allow_refetch(entity, now)
        assert len(cache) <= bound and len(cache._refetches) <= bound
