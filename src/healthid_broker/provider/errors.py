"""OAuth 2.0 / OIDC error answers toward applications (RFC 6749 §4.1.2.1, §5.2; OIDC Core §3.1.2.6).

An :class:`OAuthError` carries the ``error`` code, a human ``error_description`` that
never contains personal data (GS-A_3813: no KVNR, names, birthdates, e-mail or tokens —
only which parameter is wrong and what to do), the HTTP ``status`` and whether the
error may be sent to the client's ``redirect_uri``.

RFC 6749 §4.1.2.1: when the ``client_id`` is unknown or the ``redirect_uri`` is missing,
invalid or not registered, the server must NOT redirect — it informs the resource owner
(a friendly page). Every other authorization-endpoint error is redirected; token-endpoint
errors (§5.2) are JSON answers and never redirected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["ERROR_CODES", "OAuthError"]

# RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3.1; OIDC Core §3.1.2.6; RFC 9126 §2.3.
ERROR_CODES: Mapping[str, int] = {
    "invalid_request": 400,
    "invalid_client": 401,
    "invalid_grant": 400,
    "unauthorized_client": 400,
    "unsupported_grant_type": 400,
    "invalid_scope": 400,
    "access_denied": 403,
    "unsupported_response_type": 400,
    "server_error": 500,
    "temporarily_unavailable": 503,
    "interaction_required": 400,
    "login_required": 400,
    "consent_required": 400,
    "request_not_supported": 400,
    "request_uri_not_supported": 400,
    "invalid_request_uri": 400,
    "invalid_request_object": 400,
    "invalid_token": 401,
}

# RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
_DESC_RE = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*\Z")


class OAuthError(Exception):
    """An OAuth/OIDC error answer.

    ``redirectable``: may be delivered to the validated ``redirect_uri`` (authorization
    endpoint only, after client and redirect URI were validated, RFC 6749 §4.1.2.1).
    ``www_authenticate``: for ``invalid_client`` after HTTP Basic (RFC 6749 §5.2, 401).
    """

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int | None = None,
        redirectable: bool = False,
        www_authenticate: str | None = None,
    ) -> None:
        if error not in ERROR_CODES:
            raise ValueError(f"unknown OAuth error code {error!r}")
        if not _DESC_RE.fullmatch(description):
            raise ValueError(
                "error_description must be printable ASCII without '\"' and '\\' "
                "(RFC 6749 §5.2)"
            )
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = ERROR_CODES[error] if status is None else status
        self.redirectable = redirectable
        self.www_authenticate = www_authenticate

    def to_dict(self) -> dict[str, Any]:
        """The JSON body (RFC 6749 §5.2) or the redirect parameters (§4.1.2.1)."""
        return {"error": self.error, "error_description": self.description}

    def redirect_params(self, state: str | None) -> dict[str, str]:
        """Query parameters for the redirect; ``state`` echoed when the app sent one."""
        if not self.redirectable:
            raise ValueError(
                f"{self.error} must not be redirected to the client (RFC 6749 §4.1.2.1)"
            )
        params = {"error": self.error, "error_description": self.description}
        if state is not None:
            params["state"] = state
        return params

    def headers(self) -> dict[str, str]:
        """Response headers: ``no-store`` always; ``WWW-Authenticate`` for Basic 401."""
        h = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.www_authenticate is not None:
            h["WWW-Authenticate"] = self.www_authenticate
        return h

    # Factories for the common cases ---------------------------------------------------
    @classmethod
    def invalid_request(cls, description: str, *, redirectable: bool = False) -> OAuthError:
        return cls("invalid_request", description, redirectable=redirectable)

    @classmethod
    def invalid_client(cls, description: str, *, basic: bool = False) -> OAuthError:
        return cls(
            "invalid_client",
            description,
            www_authenticate='Basic realm="token", charset="UTF-8"' if basic else None,
        )

    @classmethod
    def invalid_grant(cls, description: str) -> OAuthError:
        return cls("invalid_grant", description)

    @classmethod
    def invalid_scope(cls, description: str, *, redirectable: bool = True) -> OAuthError:
        return cls("invalid_scope", description, redirectable=redirectable)
