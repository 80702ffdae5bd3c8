"""Tenants, applications, clients and per-application key sets.

Entry point: :class:`~healthid_broker.tenancy.service.TenancyService` (a facade over
:mod:`.tenants`, :mod:`.applications`, :mod:`.clients`, :mod:`.keys`, with transactions
scoped to one tenant by :mod:`.store`); immutable views in
:mod:`~healthid_broker.tenancy.views`; rotation rules in :mod:`~healthid_broker.tenancy.keyset`.
"""

from __future__ import annotations

from .errors import Conflict, InvalidInput, NotFound, TenancyError
from .keys import ENVIRONMENTS
from .keyset import RotationPolicy
from .service import TenancyService
from .views import (
    AppKeys,
    ApplicationView,
    ClientView,
    CreatedClient,
    KeyChange,
    KeyInfo,
    MtlsIdentity,
    TenantView,
)

__all__ = [
    "ENVIRONMENTS",
    "AppKeys",
    "ApplicationView",
    "ClientView",
    "Conflict",
    "CreatedClient",
    "InvalidInput",
    "KeyChange",
    "KeyInfo",
    "MtlsIdentity",
    "NotFound",
    "RotationPolicy",
    "TenancyError",
    "TenancyService",
    "TenantView",
]
