"""Typed federation errors. Every message names the entity and says what is wrong.

Messages carry entity identifiers, key ids, times and claim names only — never personal
data (GS-A_3813): entity statements describe organisations and endpoints, not persons.
"""

from __future__ import annotations

from collections.abc import Sequence


class FederationError(Exception):
    """Base class of every federation failure."""


class StatementError(FederationError):
    """An entity statement is malformed, wrongly typed or wrongly signed."""


class StatementExpired(StatementError):
    """An entity statement is outside its validity window."""


class UnknownKey(StatementError):
    """A statement's ``kid`` names no key of its issuer (after a permitted re-fetch)."""


class TrustChainError(FederationError):
    """No valid trust chain to a configured trust anchor.

    ``errors`` holds the reason each explored path failed (in exploration order), so a
    caller or a test can see *why* — e.g. one :class:`StatementExpired` per dead path.
    """

    def __init__(self, message: str, errors: Sequence[FederationError] = ()) -> None:
        super().__init__(message)
        self.errors: list[FederationError] = list(errors)


class ConstraintViolation(TrustChainError):
    """A superior's ``constraints`` (OpenID Federation 1.0 §6.2) reject the chain."""


class PolicyError(FederationError):
    """A metadata policy is invalid, cannot be merged, or rejects the metadata."""


class FetchError(FederationError):
    """A statement could not be fetched (transport failure or error answer)."""
