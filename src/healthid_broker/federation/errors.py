"""Typed federation errors. Every message names the entity and says what is wrong."""

from __future__ import annotations


class FederationError(Exception):
    """Base class of every federation failure."""


class StatementError(FederationError):
    """An entity statement is malformed, wrongly typed or wrongly signed."""


class StatementExpired(StatementError):
    """An entity statement is outside its validity window."""


class UnknownKey(StatementError):
    """A statement's ``kid`` names no key of its issuer (after a permitted re-fetch)."""


class TrustChainError(FederationError):
    """No valid trust chain to a configured trust anchor."""


class PolicyError(FederationError):
    """A metadata policy is invalid, cannot be merged, or rejects the metadata."""


class FetchError(FederationError):
    """A statement could not be fetched (transport failure or error answer)."""
