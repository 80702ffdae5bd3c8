"""A tiny in-memory federation for tests: entities whose entity configurations and
subordinate statements are signed on request (with the fake clock's time) and served
through :class:`RoutingClient`.  Tests mutate entities to break things."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from healthid_broker.crypto.jose import JWK, sign_jws
from healthid_broker.federation.statements import keys_to_jwks
from healthid_broker.federation.trust_chain import TrustAnchor
from healthid_broker.http import HttpResponse
from healthid_broker.http.testing import Request, RoutingClient, json_response, jwt_response

T0 = 1_800_000_000.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_kid_counter = [0]


def new_key(prefix: str = "k") -> JWK:
    _kid_counter[0] += 1
    return JWK.generate(kid=f"{prefix}{_kid_counter[0]}", use="sig", alg="ES256")


@dataclass
class Sub:
    """How a superior describes one subordinate (extra claims, overrides)."""

    claims: dict[str, Any] = field(default_factory=dict)
    keys: list[JWK] | None = None  # None: the subject's current published keys
    lifetime: int = 86400
    sign_with: JWK | None = None


@dataclass
class Entity:
    entity_id: str
    key: JWK
    fed: Federation
    authority_hints: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    extra_keys: list[JWK] = field(default_factory=list)
    lifetime: int = 86400
    sign_with: JWK | None = None
    typ: str = "entity-statement+jwt"
    subordinates: dict[str, Sub] = field(default_factory=dict)
    ec_hook: Callable[[dict[str, Any]], None] | None = None
    down: bool = False

    @property
    def fetch_endpoint(self) -> str:
        return f"{self.entity_id}/fetch"

    def published_keys(self) -> list[JWK]:
        return [self.key, *self.extra_keys]

    def configuration_claims(self) -> dict[str, Any]:
        now = int(self.fed.clock())
        claims: dict[str, Any] = {
            "iss": self.entity_id, "sub": self.entity_id, "iat": now,
            "exp": now + self.lifetime, "jwks": keys_to_jwks(self.published_keys()),
            "metadata": self.metadata,
        }
        if self.authority_hints:
            claims["authority_hints"] = list(self.authority_hints)
        if self.ec_hook:
            self.ec_hook(claims)
        return claims

    def configuration(self) -> str:
        return sign_jws(self.configuration_claims(), self.sign_with or self.key, typ=self.typ)

    def subordinate_statement(self, subject: str) -> str:
        spec = self.subordinates[subject]
        now = int(self.fed.clock())
        keys = spec.keys if spec.keys is not None else self.fed[subject].published_keys()
        claims: dict[str, Any] = {
            "iss": self.entity_id, "sub": subject, "iat": now,
            "exp": now + spec.lifetime, "jwks": keys_to_jwks(keys), **spec.claims,
        }
        return sign_jws(claims, spec.sign_with or self.key, typ="entity-statement+jwt")


class Federation:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.http = RoutingClient()
        self.entities: dict[str, Entity] = {}

    def __getitem__(self, entity_id: str) -> Entity:
        return self.entities[entity_id]

    def add(
        self,
        entity_id: str,
        *,
        hints: tuple[str, ...] | list[str] = (),
        metadata: dict[str, Any] | None = None,
        superior: bool = False,
    ) -> Entity:
        md = dict(metadata or {})
        fe = dict(md.get("federation_entity") or {"organization_name": entity_id})
        if superior:
            fe["federation_fetch_endpoint"] = f"{entity_id}/fetch"
        md["federation_entity"] = fe
        ent = Entity(entity_id, new_key(), self, list(hints), md)
        self.entities[entity_id] = ent

        def well_known(_req: Request) -> HttpResponse:
            if ent.down:
                return json_response({"error": "temporarily_unavailable"}, 503)
            return jwt_response(ent.configuration())

        def fetch(req: Request) -> HttpResponse:
            if ent.down:
                return json_response({"error": "temporarily_unavailable"}, 503)
            if req.query.get("iss") != ent.entity_id:
                return json_response({"operation": "FETCH", "error": "invalid_request",
                                      "error_description": "wrong iss", "gematik_code": "6000"},
                                     400)
            sub = req.query.get("sub", "")
            if sub not in ent.subordinates:
                return json_response({"operation": "FETCH", "error": "invalid_request",
                                      "error_description": "unknown sub",
                                      "gematik_code": "6011"}, 400)
            return jwt_response(ent.subordinate_statement(sub))

        self.http.add(f"{entity_id}/.well-known/openid-federation", well_known)
        self.http.add(f"{entity_id}/fetch", fetch)
        return ent

    def link(self, superior: str, subject: str, **claims: Any) -> Sub:
        """``superior`` registers ``subject``: it will serve a statement about it."""
        spec = Sub(claims=claims)
        self.entities[superior].subordinates[subject] = spec
        return spec

    def anchor(self, entity_id: str) -> TrustAnchor:
        return TrustAnchor(entity_id, [self.entities[entity_id].key])


RP_METADATA: dict[str, Any] = {
    "openid_relying_party": {
        "client_name": "Demo App",
        "redirect_uris": ["https://rp.example.com/cb"],
        "response_types": ["code"],
        "grant_types": ["authorization_code"],
        "scope": "openid urn:telematik:email urn:telematik:versicherter",
        "token_endpoint_auth_method": "self_signed_tls_client_auth",
    }
}


def two_hop(clock: Clock | None = None) -> Federation:
    """TA → RP (leaf)."""
    fed = Federation(clock)
    fed.add("https://ta.example.org", superior=True)
    fed.add("https://rp.example.com", hints=["https://ta.example.org"], metadata=RP_METADATA)
    fed.link("https://ta.example.org", "https://rp.example.com")
    return fed


def three_hop(clock: Clock | None = None) -> Federation:
    """TA → INT → RP (leaf)."""
    fed = Federation(clock)
    fed.add("https://ta.example.org", superior=True)
    fed.add("https://int.example.org", hints=["https://ta.example.org"], superior=True)
    fed.add("https://rp.example.com", hints=["https://int.example.org"], metadata=RP_METADATA)
    fed.link("https://ta.example.org", "https://int.example.org")
    fed.link("https://int.example.org", "https://rp.example.com")
    return fed
