"""What the provider needs from its collaborators, declared by the provider.

:class:`~.service.ProviderService` depends on these Protocols only; the composition root
(``runtime/compose.py``) passes the implementations:

==========================  =====================================================
interface                   implementation
==========================  =====================================================
:class:`AppDirectory`       ``runtime.directory.TenancyDirectory``
:class:`UpstreamLogin`      :class:`healthid_broker.upstream.flow.Upstream`
:class:`LoginTransactions`  :class:`healthid_broker.login.login_store.LoginStore`
:class:`ClientAuthentication`  :class:`.service.ClientAuthenticator`
==========================  =====================================================

Strict mypy checks each implementation against its Protocol where the composition root
passes it to the service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ..login.transaction import CodeIssued, Started, UpstreamPending
from ..upstream.flow import RelyingParty, UpstreamStart
from ..upstream.id_token import ValidatedIdToken
from ..upstream.idp_list import IdpEntry
from .directory import AppConfig, ClientConfig

__all__ = ["AppDirectory", "ClientAuthentication", "LoginTransactions", "UpstreamLogin"]


class AppDirectory(Protocol):
    """Applications by short key: their public configuration and keys (``None``: unknown)."""

    async def get(self, short_key: str) -> AppConfig | None: ...


class UpstreamLogin(Protocol):
    """The relying party toward the sectoral IdPs.

    :meth:`start` returns an :class:`~healthid_broker.upstream.flow.UpstreamStart` whose
    ``pending`` value the provider stores under its ``state`` and hands back to
    :meth:`finish` unchanged, with the IdP's authorization response (the callback's query).
    Both raise :class:`~healthid_broker.upstream.errors.UpstreamError`.
    """

    async def idps(self) -> tuple[IdpEntry, ...]: ...

    async def start(self, rp: RelyingParty, idp_id: str, *, scope: str, acr: str,
                    prompt: str | None = None, max_age: int | None = None,
                    ) -> UpstreamStart: ...

    async def finish(self, rp: RelyingParty, pending: bytes, response: Mapping[str, str], *,
                     required_acr: str) -> ValidatedIdToken: ...


class LoginTransactions(Protocol):
    """Live login transactions by state; ``take_*`` consume atomically, and a missing,
    expired or unreadable entry is ``None``."""

    async def put_started(self, txn: Started, *, now: float) -> bool: ...

    async def take_started(self, txn_id: str, *, now: float) -> Started | None: ...

    async def put_pending(self, state: str, txn: UpstreamPending, *, now: float) -> bool: ...

    async def take_pending(self, state: str, *, now: float) -> UpstreamPending | None: ...

    async def put_code(self, code: str, txn: CodeIssued, *, now: float) -> bool: ...

    async def take_code(self, code: str, *, now: float) -> CodeIssued | None: ...


class ClientAuthentication(Protocol):
    """Authenticates the client of a token request (raises ``OAuthError``)."""

    async def authenticate(
        self, app: AppConfig, form: Sequence[tuple[str, str]], authorization: Sequence[str],
        *, token_endpoint: str, par_endpoint: str | None = None,
    ) -> ClientConfig: ...
