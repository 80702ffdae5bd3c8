"""The upstream half of a login in flight, as one opaque value.

Between the PAR (:meth:`.flow.Upstream.start`) and the IdP's redirect back
(:meth:`.flow.Upstream.finish`) the broker must remember what it sent: which IdP, its own
``nonce`` and PKCE ``code_verifier`` (RFC 7636 §4.5) and the ``redirect_uri`` of the PAR
(the token request must repeat it, RFC 6749 §4.1.3). The upstream room writes these into
one versioned byte string; the provider keeps it, unread, in the login transaction
(``UpstreamPending.upstream``), where the login store seals it with AES-256-GCM bound to
the purpose ``login.upstream`` and the broker's ``state`` (docs/login-flow.md), and hands
it back unchanged at the callback. The ``state`` itself is not inside: it is the store key
that found the transaction.

Format: compact JSON ``{"v":1,"i":idp,"n":nonce,"cv":code_verifier,"r":redirect_uri}``.
A later format gets a new ``v``; :meth:`PendingLogin.decode` keeps reading every version a login
started by an earlier release could still hold (≤ 10 minutes, T-01).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import jsoncodec
from .errors import AuthorizationResponseError

__all__ = ["FORMAT_VERSION", "PendingLogin"]

FORMAT_VERSION = 1
_MAX_SIZE = 4096
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1


@dataclass(frozen=True)
class PendingLogin:
    """What :meth:`.flow.Upstream.finish` needs of the PAR it follows up."""

    idp: str
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str

    def encode(self) -> bytes:
        return jsoncodec.dumps({"v": FORMAT_VERSION, "i": self.idp, "n": self.nonce,
                               "cv": self.code_verifier, "r": self.redirect_uri})

    @classmethod
    def decode(cls, data: bytes) -> PendingLogin:
        """Read :meth:`encode`'s output; anything else is an
        :class:`~.errors.AuthorizationResponseError` (the login cannot be finished; the
        message names no value)."""
        if not isinstance(data, bytes) or len(data) > _MAX_SIZE:
            raise AuthorizationResponseError("the pending upstream login is not readable")
        try:
            obj = jsoncodec.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise AuthorizationResponseError("the pending upstream login is not JSON") from None
        if not isinstance(obj, dict) or obj.get("v") != FORMAT_VERSION:
            raise AuthorizationResponseError(
                "the pending upstream login has an unknown format version")
        if set(obj) != {"v", "i", "n", "cv", "r"}:
            raise AuthorizationResponseError("the pending upstream login has the wrong members")
        idp, nonce, verifier, redirect_uri = obj["i"], obj["n"], obj["cv"], obj["r"]
        if not all(isinstance(v, str) and v for v in (idp, nonce, verifier, redirect_uri)):
            raise AuthorizationResponseError("the pending upstream login has an empty member")
        if not _VERIFIER.fullmatch(verifier):
            raise AuthorizationResponseError(
                "the pending upstream login's PKCE verifier is invalid")
        return cls(idp, nonce, verifier, redirect_uri)
