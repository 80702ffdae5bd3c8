"""The sandbox federation master (trust anchor), modelled on gematik's gsi-fedmaster.

Endpoints (OpenID Federation 1.0 §8, gematik profile: docs/ti-profile.md §3):

* ``<master>/.well-known/openid-federation`` — entity configuration, ``exp - iat = 86400``,
  no ``authority_hints``;
* ``<master>/fetch?iss=…&sub=…`` — subordinate statements; errors as gematik's
  400 JSON ``{operation:"FETCH", error, error_description, gematik_timestamp,
  gematik_uuid, gematik_code}`` (6000 wrong iss, 6011 unknown sub);
* ``<master>/list`` — JSON array of member entity identifiers;
* ``<master>/idp-list`` — JWS ``typ=idp-list+jwt`` listing the sectoral IdPs;
* ``<master>/registration`` — SANDBOX ONLY: stand-in for gematik's out-of-band RP
  registration (POST JSON, see :mod:`.registry`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..crypto.jose import JWK, sign_jws
from ..federation.statements import ENTITY_STATEMENT_CONTENT_TYPE, sign_statement
from .registry import RegistrationError, RegistrationStore, parse_registration

MASTER_STATEMENT_LIFETIME = 86400  # seconds; captured RU/TU master statements
IDP_LIST_TYP = "idp-list+jwt"
IDP_LIST_CONTENT_TYPE = "application/jwt"

FETCH_WRONG_ISS = 6000
FETCH_UNKNOWN_SUB = 6011


@dataclass(frozen=True)
class Member:
    """A sectoral IdP known to the master."""

    entity_id: str
    organization_name: str
    logo_uri: str
    jwks: dict[str, Any]
    pkv: bool = False


class FederationMaster:
    def __init__(
        self,
        entity_id: str,
        key: JWK,
        registrations: RegistrationStore,
        clock: Callable[[], float],
    ) -> None:
        self.entity_id = entity_id
        self.key = key
        self.registrations = registrations
        self.idps: dict[str, Member] = {}
        self._clock = clock

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public().public_dict()]}

    def add_idp(self, member: Member) -> None:
        self.idps[member.entity_id] = member

    # ------------------------------------------------------------------ statements

    def entity_configuration(self) -> str:
        now = int(self._clock())
        base = self.entity_id
        return sign_statement(
            {
                "iss": base,
                "sub": base,
                "iat": now,
                "exp": now + MASTER_STATEMENT_LIFETIME,
                "jwks": self.jwks,
                "metadata": {
                    "federation_entity": {
                        "federation_fetch_endpoint": f"{base}/fetch",
                        "federation_list_endpoint": f"{base}/list",
                        "idp_list_endpoint": f"{base}/idp-list",
                        "organization_name": "SANDBOX Federation Master",
                        "homepage_uri": base,
                    }
                },
            },
            self.key,
        )

    def subordinate_statement(self, sub: str) -> str | None:
        """The master's statement about ``sub``, or None when it is not a member."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.entity_id,
            "sub": sub,
            "iat": now,
            "exp": now + MASTER_STATEMENT_LIFETIME,
        }
        idp = self.idps.get(sub)
        if idp is not None:
            claims["jwks"] = idp.jwks
        else:
            reg = self.registrations.get(sub)
            if reg is None:
                return None
            claims["jwks"] = reg.jwks
            # The real master's statement about an RP carries only this metadata.
            claims["metadata"] = {
                "openid_relying_party": {"client_registration_types": ["automatic"]}
            }
        return sign_statement(claims, self.key)

    def idp_list(self) -> str:
        now = int(self._clock())
        entries = [
            {
                "iss": m.entity_id,
                "organization_name": m.organization_name,
                "logo_uri": m.logo_uri,
                "user_type_supported": "IP",
                "pkv": m.pkv,
            }
            for m in self.idps.values()
        ]
        return sign_jws(
            {
                "iss": self.entity_id,
                "iat": now,
                "nbf": now,
                "exp": now + MASTER_STATEMENT_LIFETIME,
                "idp_entity": entries,
            },
            self.key,
            typ=IDP_LIST_TYP,
        )

    def members(self) -> list[str]:
        return [*self.idps, *self.registrations.all()]

    # ------------------------------------------------------------------ HTTP

    def _fetch_error(self, code: int, description: str) -> JSONResponse:
        return JSONResponse(
            {
                "operation": "FETCH",
                "error": "invalid_request",
                "error_description": description,
                "gematik_timestamp": int(self._clock()),
                "gematik_uuid": str(uuid.uuid4()),
                "gematik_code": str(code),
            },
            status_code=400,
        )

    async def _ec(self, request: Request) -> Response:
        return Response(self.entity_configuration(), media_type=ENTITY_STATEMENT_CONTENT_TYPE)

    async def _fetch(self, request: Request) -> Response:
        iss = request.query_params.get("iss")
        sub = request.query_params.get("sub")
        # iss is optional since OpenID Federation 1.0 §8.1.1 dropped it; a wrong one is 6000.
        if iss is not None and iss != self.entity_id:
            return self._fetch_error(
                FETCH_WRONG_ISS, "parameter iss must be the entity identifier of this master"
            )
        if not sub:
            return self._fetch_error(FETCH_UNKNOWN_SUB, "parameter sub is missing")
        stmt = self.subordinate_statement(sub)
        if stmt is None:
            return self._fetch_error(FETCH_UNKNOWN_SUB, "sub is not a member of the federation")
        return Response(stmt, media_type=ENTITY_STATEMENT_CONTENT_TYPE)

    async def _list(self, request: Request) -> Response:
        return JSONResponse(self.members())

    async def _idp_list(self, request: Request) -> Response:
        return Response(self.idp_list(), media_type=IDP_LIST_CONTENT_TYPE)

    async def _register(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            reg = parse_registration(body, now=self._clock())
        except ValueError as exc:  # JSON errors and RegistrationError
            msg = str(exc) if isinstance(exc, RegistrationError) else "body is not JSON"
            return JSONResponse(
                {"error": "invalid_request", "error_description": msg}, status_code=400
            )
        if reg.entity_id in self.idps or reg.entity_id == self.entity_id:
            return JSONResponse(
                {"error": "invalid_request",
                 "error_description": "entity_id belongs to the sandbox itself"},
                status_code=400,
            )
        self.registrations.add(reg)
        return JSONResponse({"entity_id": reg.entity_id, "registered": True}, status_code=201)

    def routes(self, prefix: str) -> list[Route]:
        return [
            Route(f"{prefix}/.well-known/openid-federation", self._ec),
            Route(f"{prefix}/fetch", self._fetch),
            Route(f"{prefix}/list", self._list),
            Route(f"{prefix}/idp-list", self._idp_list),
            Route(f"{prefix}/registration", self._register, methods=["POST"]),
        ]
