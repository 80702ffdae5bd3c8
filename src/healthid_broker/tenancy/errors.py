"""Typed tenancy errors. Messages name the object and say what to change; they never
contain secrets, private keys or personal data."""

from __future__ import annotations


class TenancyError(Exception):
    """Base class of every tenancy failure."""


class InvalidInput(TenancyError, ValueError):
    """A value does not satisfy the rules (short key, redirect URI, scopes, acr, …)."""


class NotFound(TenancyError, LookupError):
    """The named tenant, application or client does not exist."""


class Conflict(TenancyError):
    """The object exists already, or the change would break another object."""
