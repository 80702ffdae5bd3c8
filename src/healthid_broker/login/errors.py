"""Typed errors of the login room. Messages never carry personal data or raw keys."""

from __future__ import annotations


class LoginError(Exception):
    """Base class of every login-transaction failure."""


class IllegalTransition(LoginError):
    """A transition was attempted from a state that does not allow it."""


class TransactionExpired(LoginError):
    """The login transaction outlived its deadline (≤ 10 minutes, T-01 in docs/toms.md)."""


class CorruptTransaction(LoginError):
    """A stored transaction could not be decoded (wrong schema or wrong state)."""


class StoreError(LoginError):
    """The transient store refused or failed an operation."""


class StoreFull(StoreError):
    """The store cannot take another entry: the bounded in-memory store holds its maximum
    number of live entries, or Redis refused the write at ``maxmemory`` (OOM). The refused
    write cost one operation; the web layer answers 503."""


class StoreUnavailable(StoreError):
    """Redis cannot be reached or did not answer within the command timeout; the web
    layer answers 503."""


class TTLRefused(StoreError):
    """A TTL outside (0, 600] seconds was requested (data-category rule, T-01)."""


class SealError(StoreError):
    """A sealed entry could not be opened: tampered, bound to another purpose/key,
    or sealed under a key id this broker does not hold."""
