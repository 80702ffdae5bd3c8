"""A sandbox sectoral IdP (gematik "sektoraler IdP", modelled on gsi-server).

What it imitates (docs/ti-profile.md §4, §6 and §9: the sectoral IdP, the login step by
step, the error answers):

* entity configuration (``exp - iat`` = 2 h like the reference IdP) and a signed JWKS
  (``application/jwk-set+json``, JWS over ``{iss, iat, keys}``);
* PAR (RFC 9126) and token endpoints behind self-signed mutual TLS (RFC 8705 §2.2);
  the client is validated like the reference IdP does: master's statement about the RP →
  RP entity configuration signed by a key from it → ``redirect_uri`` ∈ ``redirect_uris``
  → scopes ⊆ RP ``scope`` → TLS client certificate ∈ the RP's ``x5c`` → an enc key;
* an authorization endpoint with a person picker (or ``auto_person``);
* ID tokens: JWE (ECDH-ES, A256GCM, ``cty=JWT``, RP enc ``kid``; ``version="2.0.0"`` when
  negotiated, A_27505) around a JWS (ES256, ``kid``, ``x5c``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..crypto.jose import JWK, JoseError, encrypt_jwe, parse_jws, sign_jws, verify_jws
from ..federation.errors import FederationError
from ..federation.statements import (
    ENTITY_STATEMENT_CONTENT_TYPE,
    jwks_to_keys,
    sign_statement,
    verify_statement,
)
from ..http import HttpClient, HttpTransportError
from ..ti_profile import ACR_HIGH, ACR_SUBSTANTIAL
from .persons import PERSONS, SUPPORTED_SCOPES, Person, claims_for, find_person

IDP_STATEMENT_LIFETIME = 7200  # reference IdP: 2 h
PAR_LIFETIME = 90  # A_22993 (reference: 90 s)
CODE_LIFETIME = 60
ID_TOKEN_LIFETIME = 300
RP_CACHE_SECONDS = 60
MAX_RP_STATEMENT_LIFETIME = 86400  # A_23034

AMR_MEW = "urn:telematik:auth:mEW"

BANNER_HEADERS = {"X-Sandbox": "SANDBOX - not for production"}


@dataclass(frozen=True)
class IdPProfile:
    """The personality of one sandbox IdP."""

    slug: str
    name: str
    id_token_versions: tuple[str, ...] = ("1.0.0",)
    reaches_high: bool = True
    amr_high: str = "urn:telematik:auth:eID"
    pkv: bool = False


PROFILES: tuple[IdPProfile, ...] = (
    IdPProfile("nordkasse", "Sandbox Nordkasse", ("1.0.0",), True, "urn:telematik:auth:eGK"),
    IdPProfile("suedkasse", "Sandbox Südkasse", ("1.0.0", "2.0.0"), True,
               "urn:telematik:auth:eID"),
    IdPProfile("mittelland-bkk", "Sandbox BKK Mittelland", ("1.0.0",), False, AMR_MEW),
    IdPProfile("privat", "Sandbox Private Krankenversicherung", ("1.0.0", "2.0.0"), True,
               "urn:telematik:auth:eID", pkv=True),
)


class OAuthError(Exception):
    """An OAuth error answer (RFC 6749 §5.2 / RFC 9126 §2.3)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
            headers={"Cache-Control": "no-store", **BANNER_HEADERS},
        )


@dataclass
class RelyingParty:
    """What the IdP learnt about an RP from its (verified) entity configuration."""

    entity_id: str
    redirect_uris: list[str]
    scopes: set[str]
    enc_key: JWK
    cert_ders: set[bytes]
    id_token_versions: list[str]
    valid_until: float


@dataclass
class PushedRequest:
    client_id: str
    redirect_uri: str
    state: str
    nonce: str
    code_challenge: str
    scopes: list[str]
    acr: str
    amr: str
    version: str
    enc_key: JWK
    expires: float
    # A_23030: the RP forces a new authentication with these (recorded for tests; this
    # IdP keeps no session, so every login authenticates anew anyway)
    prompt: str | None = None
    max_age: str | None = None


@dataclass
class IssuedCode:
    request: PushedRequest
    kvnr: str
    expires: float


@dataclass
class IdPEndpoints:
    entity_id: str  # https://host:P/idp/<slug>
    mtls_base: str  # https://host:P+1/idp/<slug>
    front_base: str  # http://host:P+2/idp/<slug>
    logo_uri: str


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _pkce_ok(challenge: str) -> bool:
    """RFC 7636 §4.2: S256 challenge = base64url(SHA-256), 43 characters."""
    if len(challenge) != 43:
        return False
    return all(c.isascii() and (c.isalnum() or c in "-_") for c in challenge)


def _optional(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


@dataclass
class _Stores:
    par: dict[str, PushedRequest] = field(default_factory=dict)
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    rps: dict[str, RelyingParty] = field(default_factory=dict)


class SectoralIdP:
    def __init__(
        self,
        profile: IdPProfile,
        endpoints: IdPEndpoints,
        *,
        master_entity_id: str,
        master_keys: list[JWK],
        federation_key: JWK,
        id_token_key: JWK,
        http: HttpClient,
        peer_certs: dict[int, bytes],
        pairwise_secret: bytes,
        templates: jinja2.Environment,
        clock: Callable[[], float] = time.time,
        auto_person: str | None = None,
    ) -> None:
        self.profile = profile
        self.ep = endpoints
        self.master_entity_id = master_entity_id
        self.master_keys = master_keys
        self.federation_key = federation_key
        self.id_token_key = id_token_key
        self.http = http
        self.peer_certs = peer_certs
        self.pairwise_secret = pairwise_secret
        self.templates = templates
        self.clock = clock
        self.auto_person = auto_person
        self.s = _Stores()

    @property
    def entity_id(self) -> str:
        return self.ep.entity_id

    @property
    def acr_values_supported(self) -> list[str]:
        return [ACR_HIGH, ACR_SUBSTANTIAL] if self.profile.reaches_high else [ACR_SUBSTANTIAL]

    # ------------------------------------------------------------------ federation

    def metadata(self) -> dict[str, Any]:
        return {
            "openid_provider": {
                "issuer": self.entity_id,
                "signed_jwks_uri": f"{self.entity_id}/jwks",
                "organization_name": self.profile.name,
                "logo_uri": self.ep.logo_uri,
                "authorization_endpoint": f"{self.ep.front_base}/auth",
                "token_endpoint": f"{self.ep.mtls_base}/token",
                "pushed_authorization_request_endpoint": f"{self.ep.mtls_base}/par",
                "client_registration_types_supported": ["automatic"],
                "subject_types_supported": ["pairwise"],
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code"],
                "require_pushed_authorization_requests": True,
                "token_endpoint_auth_methods_supported": ["self_signed_tls_client_auth"],
                "request_authentication_methods_supported": {
                    "ar": ["none"], "par": ["self_signed_tls_client_auth"],
                },
                "id_token_signing_alg_values_supported": ["ES256"],
                "id_token_encryption_alg_values_supported": ["ECDH-ES"],
                "id_token_encryption_enc_values_supported": ["A256GCM"],
                "user_type_supported": ["IP"],
                "acr_values_supported": self.acr_values_supported,
                "scopes_supported": list(SUPPORTED_SCOPES),
                "code_challenge_methods_supported": ["S256"],
                "ti_features_supported": {
                    "id_token_version_supported": list(self.profile.id_token_versions)
                },
            },
            "federation_entity": {
                "organization_name": self.profile.name,
                "homepage_uri": self.ep.front_base,
                "logo_uri": self.ep.logo_uri,
            },
        }

    def entity_configuration(self) -> str:
        now = int(self.clock())
        return sign_statement(
            {
                "iss": self.entity_id,
                "sub": self.entity_id,
                "iat": now,
                "exp": now + IDP_STATEMENT_LIFETIME,
                "jwks": {"keys": [self.federation_key.public().public_dict()]},
                "authority_hints": [self.master_entity_id],
                "metadata": self.metadata(),
            },
            self.federation_key,
        )

    def signed_jwks(self) -> str:
        now = int(self.clock())
        return sign_jws(
            {"iss": self.entity_id, "iat": now,
             "keys": [self.id_token_key.public().public_dict()]},
            self.federation_key,
            typ="jwk-set+json",
        )

    # ------------------------------------------------------------------ RP validation

    async def _get_jwt(self, url: str, what: str) -> str:
        try:
            r = await self.http.get(url)
        except HttpTransportError as exc:
            raise OAuthError(401, "invalid_client", f"{what} is unreachable: {exc}") from exc
        if r.status != 200:
            raise OAuthError(401, "invalid_client", f"{what} answered HTTP {r.status}")
        return r.text.strip()

    async def resolve_rp(self, client_id: str) -> RelyingParty:
        """Validate the RP through the federation (cached for a minute)."""
        now = self.clock()
        cached = self.s.rps.get(client_id)
        if cached is not None and cached.valid_until > now:
            return cached
        fetch = f"{self.master_entity_id}/fetch?" + urlencode(
            {"iss": self.master_entity_id, "sub": client_id}
        )
        try:
            token = await self._get_jwt(fetch, "the federation master's statement about client")
        except OAuthError as exc:
            raise OAuthError(
                401, "invalid_client", "client_id is not registered at the federation master"
            ) from exc
        try:
            sub_stmt = verify_statement(token, self.master_keys, now=now,
                                        signer=self.master_entity_id)
            if sub_stmt.sub != client_id or sub_stmt.iss != self.master_entity_id:
                raise OAuthError(401, "invalid_client", "master statement names another entity")
            ec_url = f"{client_id}/.well-known/openid-federation"
            rp_token = await self._get_jwt(ec_url, "the client's entity configuration")
            rp = verify_statement(rp_token, sub_stmt.keys(), now=now, signer=client_id)
        except FederationError as exc:
            raise OAuthError(401, "invalid_client", f"client entity statement rejected: {exc}"
                             ) from exc
        if rp.iss != client_id or rp.sub != client_id:
            raise OAuthError(401, "invalid_client", "client entity configuration: iss/sub differ "
                             "from client_id")
        if rp.exp - rp.iat > MAX_RP_STATEMENT_LIFETIME:
            raise OAuthError(401, "invalid_client",
                             "client entity configuration is valid longer than 24 h (A_23034)")
        if self.master_entity_id not in rp.authority_hints:
            raise OAuthError(401, "invalid_client",
                             "client entity configuration does not name the master in "
                             "authority_hints")
        md = rp.metadata.get("openid_relying_party")
        if not isinstance(md, dict):
            raise OAuthError(401, "invalid_client", "client has no openid_relying_party metadata")
        keys = await self._rp_keys(md, rp.keys(), client_id)
        enc = [k for k in keys if k.use == "enc"]
        if not enc:
            raise OAuthError(401, "invalid_client",
                             "client publishes no encryption key (use=enc, A_23194)")
        ders: set[bytes] = set()
        for k in keys:
            if k.use == "sig" and k.x5c:
                for c in k.x5c:
                    try:
                        ders.add(base64.b64decode(c, validate=True))
                    except ValueError:
                        continue
        redirect_uris = md.get("redirect_uris")
        scope = md.get("scope")
        if not isinstance(redirect_uris, list) or not all(isinstance(u, str)
                                                          for u in redirect_uris):
            raise OAuthError(401, "invalid_client", "client metadata redirect_uris is not a list")
        if not isinstance(scope, str):
            raise OAuthError(401, "invalid_client", "client metadata scope is not a string")
        features = md.get("ti_features_supported") or {}
        versions = features.get("id_token_version_supported") if isinstance(features, dict) \
            else None
        info = RelyingParty(
            client_id, list(redirect_uris), set(scope.split()), enc[0], ders,
            [v for v in versions or [] if isinstance(v, str)],
            min(now + RP_CACHE_SECONDS, rp.exp),
        )
        self.s.rps[client_id] = info
        return info

    async def _rp_keys(self, md: dict[str, Any], fed_keys: list[JWK],
                       client_id: str) -> list[JWK]:
        try:
            if "jwks" in md:
                return jwks_to_keys(md["jwks"], owner=client_id)
            uri = md.get("signed_jwks_uri")
            if not isinstance(uri, str):
                raise OAuthError(401, "invalid_client", "client metadata has no jwks")
            token = await self._get_jwt(uri, "the client's signed_jwks_uri")
            parsed = parse_jws(token)
            verify_jws(parsed, fed_keys)
            return jwks_to_keys(parsed.payload_json(), owner=client_id)
        except (FederationError, JoseError) as exc:
            raise OAuthError(401, "invalid_client", f"client keys unusable: {exc}") from exc

    def _check_cert(self, request: Request, rp: RelyingParty) -> None:
        """RFC 8705 §2.2: the TLS client certificate must be one the RP published."""
        client = request.scope.get("client")
        der = self.peer_certs.get(int(client[1])) if client else None
        if not der:
            raise OAuthError(401, "invalid_client", "no TLS client certificate presented")
        if der not in rp.cert_ders:
            raise OAuthError(401, "invalid_client",
                             "TLS client certificate is not in the client's entity statement")

    # ------------------------------------------------------------------ PAR

    @staticmethod
    def _single(form: FormData, names: tuple[str, ...]) -> dict[str, str]:
        out: dict[str, str] = {}
        for n in names:
            values = form.getlist(n)
            if len(values) > 1:
                raise OAuthError(400, "invalid_request", f"parameter {n} is repeated")
            if not values or not isinstance(values[0], str) or not values[0]:
                raise OAuthError(400, "invalid_request", f"parameter {n} is missing")
            out[n] = values[0]
        return out

    async def par(self, request: Request) -> Response:
        try:
            return await self._par(request)
        except OAuthError as exc:
            return exc.response()

    async def _par(self, request: Request) -> Response:
        form = await request.form()
        p = self._single(form, (
            "client_id", "response_type", "redirect_uri", "state", "nonce", "scope",
            "code_challenge", "code_challenge_method", "acr_values",
        ))
        rp = await self.resolve_rp(p["client_id"])
        self._check_cert(request, rp)
        if p["response_type"] != "code":
            raise OAuthError(400, "unsupported_response_type", "only response_type=code")
        if p["code_challenge_method"] != "S256":
            raise OAuthError(400, "invalid_request", "code_challenge_method must be S256")
        if not _pkce_ok(p["code_challenge"]):
            raise OAuthError(400, "invalid_request",
                             "code_challenge must be a 43-character base64url S256 value")
        if p["redirect_uri"] not in rp.redirect_uris:
            raise OAuthError(400, "invalid_request",
                             "redirect_uri is not registered in the client's entity statement")
        scopes = p["scope"].split()
        if "openid" not in scopes:
            raise OAuthError(400, "invalid_scope", "scope must contain openid")
        unknown = [s for s in scopes if s not in SUPPORTED_SCOPES]
        if unknown:
            raise OAuthError(400, "invalid_scope", "scope contains unsupported values")
        if not set(scopes) <= rp.scopes:
            raise OAuthError(400, "invalid_scope",
                             "scope exceeds the scope in the client's entity statement")
        acrs = p["acr_values"].split()
        if not acrs or any(a not in (ACR_HIGH, ACR_SUBSTANTIAL) for a in acrs):
            raise OAuthError(400, "invalid_request", "acr_values contains unknown values")
        if ACR_HIGH in acrs and self.profile.reaches_high:
            acr, amr = ACR_HIGH, self.profile.amr_high
        else:
            # This IdP may answer below the requested level; the RP must check (A_23202-02).
            acr, amr = ACR_SUBSTANTIAL, AMR_MEW
        version = "2.0.0" if (
            "2.0.0" in rp.id_token_versions and "2.0.0" in self.profile.id_token_versions
        ) else "1.0.0"
        now = self.clock()
        self._expire(now)
        request_uri = f"urn:{p['client_id']}:{secrets.token_hex(16)}"
        self.s.par[request_uri] = PushedRequest(
            p["client_id"], p["redirect_uri"], p["state"], p["nonce"], p["code_challenge"],
            scopes, acr, amr, version, rp.enc_key, now + PAR_LIFETIME,
            prompt=_optional(form, "prompt"), max_age=_optional(form, "max_age"),
        )
        return JSONResponse(
            {"request_uri": request_uri, "expires_in": PAR_LIFETIME},
            status_code=201, headers={"Cache-Control": "no-store", **BANNER_HEADERS},
        )

    def _expire(self, now: float) -> None:
        for k in [k for k, v in self.s.par.items() if v.expires <= now]:
            del self.s.par[k]
        for k in [k for k, v in self.s.codes.items() if v.expires <= now]:
            del self.s.codes[k]

    # ------------------------------------------------------------------ front channel

    def _lang(self, request: Request) -> str:
        lang = request.query_params.get("lang")
        if lang in ("de", "en"):
            return lang
        ranked: list[tuple[float, str]] = []
        for part in request.headers.get("accept-language", "").split(","):
            tag, _, q = part.strip().partition(";q=")
            try:
                weight = float(q) if q else 1.0
            except ValueError:
                continue
            base = tag.split("-")[0].lower()
            if base in ("de", "en"):
                ranked.append((weight, base))
        ranked.sort(key=lambda t: -t[0])
        return ranked[0][1] if ranked else "de"

    def _page(self, request: Request, template: str, status: int, form_target: str = "",
              **ctx: Any) -> HTMLResponse:
        lang = ctx.pop("lang", None) or self._lang(request)
        html = self.templates.get_template(template).render(
            lang=lang, idp=self.profile, logo_uri=self.ep.logo_uri, **ctx
        )
        form_action = "'self'" + (f" {form_target}" if form_target else "")
        csp = (
            "default-src 'none'; style-src 'self'; img-src 'self' data:; "
            f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        )
        return HTMLResponse(html, status_code=status, headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            **BANNER_HEADERS,
        })

    def _error_page(self, request: Request, message_key: str) -> HTMLResponse:
        return self._page(request, "error.html", 400, message_key=message_key)

    def _pending(self, request_uri: str, client_id: str) -> PushedRequest | None:
        self._expire(self.clock())
        pushed = self.s.par.get(request_uri)
        if pushed is None or pushed.client_id != client_id:
            return None
        return pushed

    def _finish(self, request_uri: str, pushed: PushedRequest, person: Person,
                status: int) -> Response:
        self.s.par.pop(request_uri, None)  # request_uri is single-use
        code = secrets.token_urlsafe(32)
        self.s.codes[code] = IssuedCode(pushed, person.kvnr, self.clock() + CODE_LIFETIME)
        sep = "&" if urlsplit(pushed.redirect_uri).query else "?"
        target = pushed.redirect_uri + sep + urlencode({"code": code, "state": pushed.state})
        return RedirectResponse(target, status_code=status,
                                headers={"Cache-Control": "no-store", **BANNER_HEADERS})

    async def authorize(self, request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            get = form.get
        else:
            get = request.query_params.get  # type: ignore[assignment]
        request_uri, client_id = get("request_uri"), get("client_id")
        if not isinstance(request_uri, str) or not isinstance(client_id, str):
            return self._error_page(request, "missing")
        pushed = self._pending(request_uri, client_id)
        if pushed is None:
            return self._error_page(request, "unknown_request")
        if request.method == "GET" and self.auto_person:
            person = find_person(self.auto_person)
            if person is not None:
                return self._finish(request_uri, pushed, person, 302)
        if request.method == "POST":
            if get("action") == "cancel":
                self.s.par.pop(request_uri, None)
                sep = "&" if urlsplit(pushed.redirect_uri).query else "?"
                return RedirectResponse(
                    pushed.redirect_uri + sep + urlencode(
                        {"error": "access_denied", "state": pushed.state}),
                    status_code=303, headers=BANNER_HEADERS,
                )
            kvnr = get("kvnr")
            person = find_person(kvnr) if isinstance(kvnr, str) else None
            if person is None:
                return self._error_page(request, "unknown_person")
            return self._finish(request_uri, pushed, person, 303)
        parts = urlsplit(pushed.redirect_uri)
        return self._page(
            request, "picker.html", 200,
            form_target=f"{parts.scheme}://{parts.netloc}",
            persons=PERSONS, request_uri=request_uri, client_id=client_id,
            action=f"{self.ep.front_base}/auth", acr=pushed.acr, scopes=pushed.scopes,
        )

    # ------------------------------------------------------------------ token

    async def token(self, request: Request) -> Response:
        try:
            return await self._token(request)
        except OAuthError as exc:
            return exc.response()

    async def _token(self, request: Request) -> Response:
        form = await request.form()
        p = self._single(form, ("grant_type", "code", "code_verifier", "client_id",
                                "redirect_uri"))
        if p["grant_type"] != "authorization_code":
            raise OAuthError(400, "unsupported_grant_type", "only authorization_code")
        rp = await self.resolve_rp(p["client_id"])
        self._check_cert(request, rp)
        now = self.clock()
        issued = self.s.codes.pop(p["code"], None)  # single-use, even on a failed attempt
        if issued is None or issued.expires <= now:
            raise OAuthError(400, "invalid_grant", "code is unknown, expired or already used")
        req = issued.request
        if req.client_id != p["client_id"]:
            raise OAuthError(400, "invalid_grant", "code was issued to another client")
        if req.redirect_uri != p["redirect_uri"]:
            raise OAuthError(400, "invalid_grant", "redirect_uri differs from the PAR")
        digest = _b64u(hashlib.sha256(p["code_verifier"].encode("ascii", "replace")).digest())
        if not hmac.compare_digest(digest, req.code_challenge):
            raise OAuthError(400, "invalid_grant", "code_verifier does not match (RFC 7636)")
        person = find_person(issued.kvnr)
        if person is None:  # persons are static; a stale KVNR in a code
            raise OAuthError(400, "invalid_grant", "person vanished")
        id_token = self.build_id_token(req, person, now)
        return JSONResponse(
            {"id_token": id_token, "access_token": secrets.token_urlsafe(32),
             "token_type": "Bearer", "expires_in": ID_TOKEN_LIFETIME},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache", **BANNER_HEADERS},
        )

    def pairwise_sub(self, person: Person, client_id: str) -> str:
        """Pairwise subject: HMAC-SHA256 over (person, RP entity id) with an IdP secret."""
        mac = hmac.new(self.pairwise_secret, f"{person.kvnr}\n{client_id}".encode(),
                       hashlib.sha256)
        return _b64u(mac.digest())

    def build_id_token(self, req: PushedRequest, person: Person, now: float) -> str:
        iat = int(now)
        claims: dict[str, Any] = {
            "iss": self.entity_id,
            "sub": self.pairwise_sub(person, req.client_id),
            "aud": req.client_id,
            "iat": iat,
            "exp": iat + ID_TOKEN_LIFETIME,
            "auth_time": iat,
            "nonce": req.nonce,
            "acr": req.acr,
            "amr": [req.amr],
        }
        claims.update(claims_for(person, req.scopes, now=now))
        jws = sign_jws(claims, self.id_token_key, typ="JWT",
                       extra_headers={"x5c": list(self.id_token_key.x5c or ())})
        extra = {"version": "2.0.0"} if req.version == "2.0.0" else None
        return encrypt_jwe(jws.encode("ascii"), req.enc_key, cty="JWT", extra_headers=extra)

    # ------------------------------------------------------------------ routes

    async def _ec(self, request: Request) -> Response:
        return Response(self.entity_configuration(), media_type=ENTITY_STATEMENT_CONTENT_TYPE)

    async def _jwks(self, request: Request) -> Response:
        return Response(self.signed_jwks(), media_type="application/jwk-set+json")

    def federation_routes(self) -> list[Route]:
        path = urlsplit(self.entity_id).path
        return [
            Route(f"{path}/.well-known/openid-federation", self._ec),
            Route(f"{path}/jwks", self._jwks),
        ]

    def mtls_routes(self) -> list[Route]:
        path = urlsplit(self.ep.mtls_base).path
        return [
            Route(f"{path}/par", self.par, methods=["POST"]),
            Route(f"{path}/token", self.token, methods=["POST"]),
        ]

    def front_routes(self) -> list[Route]:
        path = urlsplit(self.ep.front_base).path
        return [Route(f"{path}/auth", self.authorize, methods=["GET", "POST"])]
