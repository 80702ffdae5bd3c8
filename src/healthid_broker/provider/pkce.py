"""PKCE, RFC 7636 — only ``S256``.

* §4.1: ``code_verifier`` = 43–128 characters of ``[A-Z] / [a-z] / [0-9] / "-" / "." /
  "_" / "~"``.
* §4.2: ``S256``: ``code_challenge = BASE64URL(SHA256(ASCII(code_verifier)))`` — always
  43 characters. ``plain`` is refused (§7.2 allows refusing it; the TI profile requires
  S256, docs/ti-profile.md and gematik's IdP approval tests).
* §4.6: the server compares in constant time here (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

from ..crypto.jose import b64u_encode
from .errors import OAuthError

__all__ = [
    "CHALLENGE_RE",
    "VERIFIER_RE",
    "check_challenge",
    "new_verifier",
    "s256",
    "verify",
]

VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}\Z")
CHALLENGE_RE = re.compile(r"^[A-Za-z0-9\-_]{43}\Z")


def s256(verifier: str) -> str:
    """RFC 7636 §4.2 S256 transformation."""
    return b64u_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def new_verifier(random: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A fresh verifier: 32 random bytes → 43 base64url characters (RFC 7636 §4.1)."""
    return b64u_encode(random(32))


def check_challenge(challenge: str | None, method: str | None) -> None:
    """Validate an authorization request's ``code_challenge``/``_method`` (§4.3).

    Errors are redirectable ``invalid_request`` (the client is known at that point).
    """
    if challenge is None:
        raise OAuthError.invalid_request("code_challenge is required", redirectable=True)
    if method != "S256":
        raise OAuthError.invalid_request(
            "code_challenge_method must be S256 (plain is not supported)", redirectable=True
        )
    if not CHALLENGE_RE.match(challenge):
        raise OAuthError.invalid_request(
            "code_challenge must be 43 base64url characters (S256)", redirectable=True
        )


def verify(verifier: str | None, challenge: str, method: str = "S256") -> None:
    """Token endpoint check (§4.6); raises ``invalid_grant`` on any mismatch."""
    if method != "S256":
        raise OAuthError.invalid_grant("code_challenge_method must be S256")
    if verifier is None:
        raise OAuthError.invalid_request("code_verifier is required")
    if not VERIFIER_RE.match(verifier):
        raise OAuthError.invalid_grant(
            "code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~"
        )
    if not hmac.compare_digest(s256(verifier).encode("ascii"), challenge.encode("utf-8")):
        raise OAuthError.invalid_grant("code_verifier does not match the code_challenge")
