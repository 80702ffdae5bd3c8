"""Trust-chain resolution (OpenID Federation 1.0 §4 trust chain, §9 obtaining entity
configurations, §8.1 fetch endpoint, §10 resolving trust, §6 policy and constraints).

Resolution, from a leaf entity id:

1. fetch the leaf's entity configuration (``<id>/.well-known/openid-federation``) and
   check it is self-signed with its own ``jwks``;
2. for each ``authority_hints`` entry (in the order given): fetch that superior's entity
   configuration, read ``metadata.federation_entity.federation_fetch_endpoint`` and fetch
   ``<fetch endpoint>?iss=<superior>&sub=<subject>`` (gematik's master wants both);
   the subordinate statement must verify with a key of the superior's configuration and
   the subject's configuration must verify with a key the subordinate statement lists
   (``ES[j].iss == ES[j+1].sub``, §10.2);
3. stop at a configured trust anchor; its own configuration must verify with the keys
   pinned out of band (A_23046), and its ``jwks`` — thereby vouched for by a pinned key —
   verify its subordinate statements; hints that lead nowhere (unknown anchors, loops,
   too deep) are skipped and reported only if no chain is found;
4. check ``constraints`` (§6.2) and resolve the metadata (§6.1.4) — a chain whose
   constraints or policies fail is invalid.

If several chains are valid, the one ending at the anchor listed first in the resolver's
configuration wins; among chains to the same anchor the first found (authority_hints
order, depth first) wins.  A chain expires at the smallest ``exp`` of its statements:
leaf configuration, every subordinate statement and the anchor's configuration (§10.4).

Every statement must chain to the pinned anchor before use (A_23040); foreign statements
are cached with the 12 h / 24 h / ``exp`` rules of A_23039 (:mod:`.cache`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..crypto.jose import JWK
from ..http import HttpClient, HttpTransportError
from .cache import StatementCache, configuration_key, subordinate_key
from .errors import (
    ConstraintViolation,
    FederationError,
    FetchError,
    PolicyError,
    StatementError,
    TrustChainError,
    UnknownKey,
)
from .metadata_policy import resolve_metadata
from .statements import (
    DEFAULT_LEEWAY,
    ENTITY_STATEMENT_CONTENT_TYPE,
    EntityConfiguration,
    EntityStatement,
    SubordinateStatement,
    decode_statement,
    verify_self_signed,
    verify_statement,
)

__all__ = [
    "WELL_KNOWN_PATH",
    "ChainResolver",
    "TrustAnchor",
    "TrustChain",
    "check_constraints",
    "entity_configuration_url",
    "fetch_entity_configuration",
    "fetch_subordinate_statement",
]

WELL_KNOWN_PATH = "/.well-known/openid-federation"  # §9
_ERROR_TEXT_MAX = 200


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class TrustAnchor:
    """A trust anchor with its federation signing key(s) pinned out of band (A_23046)."""

    entity_id: str
    keys: tuple[JWK, ...]

    def __init__(self, entity_id: str, keys: Iterable[JWK]) -> None:
        object.__setattr__(self, "entity_id", entity_id)
        object.__setattr__(self, "keys", tuple(k.public() for k in keys))
        if not self.keys:
            raise ValueError(f"trust anchor {entity_id} needs at least one pinned key")


@dataclass(frozen=True)
class TrustChain:
    """A resolved, valid trust chain (§4).

    ``statements`` runs leaf → anchor: the leaf's entity configuration, the subordinate
    statements (each issued by the next superior) and the anchor's entity configuration.
    """

    subject: str
    anchor: str
    statements: tuple[EntityStatement, ...]
    exp: int
    resolved_metadata: Mapping[str, Mapping[str, Any]] = field(repr=False)

    @property
    def leaf(self) -> EntityConfiguration:
        first = self.statements[0]
        assert isinstance(first, EntityConfiguration)
        return first

    @property
    def subordinate_statements(self) -> tuple[SubordinateStatement, ...]:
        return tuple(s for s in self.statements if isinstance(s, SubordinateStatement))

    @property
    def path_length(self) -> int:
        """Number of intermediates between the anchor and the leaf."""
        return max(len(self.subordinate_statements) - 1, 0)

    @property
    def entity_types(self) -> list[str]:
        return list(self.resolved_metadata)

    def federation_keys(self) -> list[JWK]:
        """The subject's federation keys, as vouched for by its immediate superior (or,
        for an anchor resolved as subject, its own pinned-verified ``jwks``)."""
        subs = self.subordinate_statements
        return subs[0].keys() if subs else self.leaf.keys()

    def metadata(self, entity_type: str) -> dict[str, Any]:
        """The subject's metadata for ``entity_type`` after superior ``metadata``,
        ``allowed_entity_types`` and the merged metadata policy (§6.1.4)."""
        md = self.resolved_metadata.get(entity_type)
        if md is None:
            raise TrustChainError(
                f"{self.subject} has no {entity_type!r} metadata in its chain to {self.anchor}"
            )
        return dict(md)

    def is_valid(self, now: float) -> bool:
        return now < self.exp


# --------------------------------------------------------------------------- fetching


def entity_configuration_url(entity_id: str) -> str:
    """§9: the well-known location of an entity configuration."""
    return entity_id.rstrip("/") + WELL_KNOWN_PATH


def _error_detail(resp_text: str, content_type: str) -> str:
    if content_type == "application/json":
        import json

        try:
            body = json.loads(resp_text)
        except ValueError:
            return ""
        if isinstance(body, dict):
            parts = [str(body.get(k)) for k in ("error", "error_description", "gematik_code")
                     if body.get(k) is not None]
            return (": " + " / ".join(parts))[:_ERROR_TEXT_MAX] if parts else ""
    return ""


async def _get_statement(http: HttpClient, url: str, what: str) -> EntityStatement:
    try:
        resp = await http.get(url, headers={"accept": ENTITY_STATEMENT_CONTENT_TYPE})
    except HttpTransportError as exc:
        raise FetchError(f"cannot fetch {what}: {exc}") from exc
    if resp.status != 200:
        raise FetchError(
            f"fetching {what} answered HTTP {resp.status}"
            + _error_detail(resp.text, resp.content_type)
        )
    if resp.content_type != ENTITY_STATEMENT_CONTENT_TYPE:
        raise FetchError(
            f"{what} was served as {resp.content_type or 'no content type'!r}, "
            f"expected {ENTITY_STATEMENT_CONTENT_TYPE!r}"
        )
    try:
        return decode_statement(resp.content.decode("ascii").strip())
    except UnicodeDecodeError as exc:
        raise StatementError(f"{what} is not a compact JWS") from exc


async def fetch_entity_configuration(
    http: HttpClient,
    entity_id: str,
    *,
    now: float,
    pinned_keys: Sequence[JWK] | None = None,
    leeway: int = DEFAULT_LEEWAY,
) -> EntityConfiguration:
    """Fetch and check ``entity_id``'s entity configuration (§9).

    It must be ``iss == sub == entity_id`` and verify with its own ``jwks`` — or, for a
    trust anchor, with ``pinned_keys`` (A_23046).  Only a superior's statement (or the
    pin) makes the keys trustworthy; this function checks self-consistency only.
    """
    what = f"entity configuration of {entity_id}"
    stmt = await _get_statement(http, entity_configuration_url(entity_id), what)
    if stmt.iss != entity_id or stmt.sub != entity_id:
        raise StatementError(
            f"{what} names iss={stmt.iss!r}, sub={stmt.sub!r}; both must be {entity_id!r}"
        )
    if pinned_keys is not None:
        try:
            verify_statement(stmt, pinned_keys, now=now, leeway=leeway,
                             signer=f"the pinned keys of trust anchor {entity_id}")
        except UnknownKey as exc:
            raise UnknownKey(
                f"{what} is signed with key {stmt.kid!r}, which is not pinned for this "
                "trust anchor (A_23046)"
            ) from exc
        stmt.keys()  # its jwks must be usable: they verify the anchor's statements
    else:
        verify_self_signed(stmt, now=now, leeway=leeway)
    return EntityConfiguration.from_statement(stmt)


def fetch_url(fetch_endpoint: str, issuer: str, subject: str) -> str:
    sep = "&" if urlsplit(fetch_endpoint).query else "?"
    return f"{fetch_endpoint}{sep}{urlencode({'iss': issuer, 'sub': subject})}"


async def fetch_subordinate_statement(
    http: HttpClient,
    superior: EntityConfiguration,
    subject: str,
    *,
    now: float,
    leeway: int = DEFAULT_LEEWAY,
) -> SubordinateStatement:
    """Fetch ``superior``'s statement about ``subject`` from its fetch endpoint (§8.1.1)
    and verify it with the keys of ``superior``'s entity configuration."""
    what = f"the statement by {superior.entity_id} about {subject}"
    url = fetch_url(superior.fetch_endpoint, superior.entity_id, subject)
    stmt = await _get_statement(http, url, what)
    if stmt.iss != superior.entity_id or stmt.sub != subject:
        raise StatementError(
            f"{what}: the answer names iss={stmt.iss!r}, sub={stmt.sub!r}"
        )
    sub_stmt = SubordinateStatement.from_statement(stmt)
    verify_statement(sub_stmt, superior.keys(), now=now, leeway=leeway,
                     signer=f"superior {superior.entity_id}")
    return sub_stmt


# --------------------------------------------------------------------------- constraints


def _host_matches(host: str, name: str) -> bool:
    """RFC 5280 §4.2.1.10 domain name constraint, as referenced by §6.2.2."""
    host, name = host.lower().rstrip("."), name.lower().rstrip(".")
    if name.startswith("."):
        return host.endswith(name)
    return host == name


def check_constraints(
    subordinate_statements: Sequence[SubordinateStatement],
) -> list[list[str]]:
    """Check every statement's ``constraints`` (§6.2) independently.

    ``subordinate_statements[i]`` is issued by the entity ``i`` steps above the subject's
    immediate superior; between it and the subject lie ``i`` intermediates.  Returns the
    ``allowed_entity_types`` lists to apply to the subject's metadata (§6.2.3).
    """
    allowed: list[list[str]] = []
    for i, ss in enumerate(subordinate_statements):
        c = ss.constraints
        who = f"constraints of {ss.iss}"
        if "max_path_length" in c:
            mpl = c["max_path_length"]
            if isinstance(mpl, bool) or not isinstance(mpl, int) or mpl < 0:
                raise ConstraintViolation(f"{who}: max_path_length must be an integer >= 0")
            if i > mpl:
                raise ConstraintViolation(
                    f"{who}: max_path_length {mpl} exceeded ({i} intermediates below it)"
                )
        if "naming_constraints" in c:
            nc = c["naming_constraints"]
            if not isinstance(nc, dict):
                raise ConstraintViolation(f"{who}: naming_constraints must be an object")
            permitted, excluded = nc.get("permitted"), nc.get("excluded") or []
            for lst, nm in ((permitted, "permitted"), (excluded, "excluded")):
                if lst is not None and (
                    not isinstance(lst, list) or not all(isinstance(x, str) for x in lst)
                ):
                    raise ConstraintViolation(f"{who}: naming_constraints.{nm} must be strings")
            for below in subordinate_statements[: i + 1]:
                host = urlsplit(below.sub).hostname or ""
                if any(_host_matches(host, n) for n in excluded):
                    raise ConstraintViolation(
                        f"{who}: entity {below.sub} is in an excluded name space"
                    )
                if permitted is not None and not any(_host_matches(host, n) for n in permitted):
                    raise ConstraintViolation(
                        f"{who}: entity {below.sub} is outside the permitted name spaces"
                    )
        if "allowed_entity_types" in c:
            aet = c["allowed_entity_types"]
            if not isinstance(aet, list) or not all(isinstance(x, str) for x in aet):
                raise ConstraintViolation(f"{who}: allowed_entity_types must be strings")
            allowed.append(aet)
    return allowed


# --------------------------------------------------------------------------- resolver


@dataclass
class _Search:
    anchors: dict[str, int]
    errors: list[FederationError] = field(default_factory=list)
    found: list[TrustChain] = field(default_factory=list)

    def best_possible(self) -> bool:
        return any(self.anchors[c.anchor] == 0 for c in self.found)


class ChainResolver:
    """Resolves trust chains to configured, pinned trust anchors (§10).

    ``max_path_length`` bounds the number of intermediates explored (the resolver's own
    depth limit, independent of the ``constraints`` the federation sets).
    """

    def __init__(
        self,
        http: HttpClient,
        anchors: Sequence[TrustAnchor],
        *,
        clock: Callable[[], float],
        cache: StatementCache | None = None,
        max_path_length: int = 5,
        leeway: int = DEFAULT_LEEWAY,
    ) -> None:
        if not anchors:
            raise ValueError("at least one trust anchor must be configured")
        self._http = http
        self._anchors = {a.entity_id: a for a in anchors}
        self._order = {a.entity_id: i for i, a in enumerate(anchors)}
        self._clock = clock
        self.cache = cache if cache is not None else StatementCache()
        self.max_path_length = max_path_length
        self._leeway = leeway

    # -- statements through the cache ----------------------------------------

    async def entity_configuration(
        self, entity_id: str, *, refetch: bool = False
    ) -> EntityConfiguration:
        """The (cached) entity configuration; anchors verify with their pinned keys."""
        anchor = self._anchors.get(entity_id)
        key = configuration_key(entity_id)

        async def fetch() -> EntityConfiguration:
            return await fetch_entity_configuration(
                self._http, entity_id, now=self._clock(), leeway=self._leeway,
                pinned_keys=anchor.keys if anchor else None,
            )

        if refetch:
            self.cache.invalidate(key)
        stmt = await self.cache.get(key, fetch, self._clock())
        # cached statements: re-check time and signature on every use
        keys = anchor.keys if anchor else stmt.keys()
        verify_statement(stmt, keys, now=self._clock(), leeway=self._leeway)
        return stmt

    async def subordinate_statement(
        self, superior: EntityConfiguration, subject: str, *, refetch: bool = False
    ) -> SubordinateStatement:
        key = subordinate_key(superior.entity_id, subject)

        async def fetch() -> SubordinateStatement:
            return await fetch_subordinate_statement(
                self._http, superior, subject, now=self._clock(), leeway=self._leeway
            )

        if refetch:
            self.cache.invalidate(key)
        stmt = await self.cache.get(key, fetch, self._clock())
        verify_statement(stmt, superior.keys(), now=self._clock(), leeway=self._leeway,
                         signer=f"superior {superior.entity_id}")
        return stmt

    async def _verified_link(
        self, superior_id: str, subject: EntityConfiguration
    ) -> tuple[EntityConfiguration, SubordinateStatement]:
        """Superior's configuration + its statement about ``subject``; the subject's
        configuration verified with the keys that statement lists.  An unknown ``kid``
        triggers one rate-limited re-fetch of the statement supplying the keys (A_22861)."""
        superior = await self.entity_configuration(superior_id)
        try:
            ss = await self.subordinate_statement(superior, subject.entity_id)
        except UnknownKey:
            if not self.cache.allow_refetch(superior_id, self._clock()):
                raise
            superior = await self.entity_configuration(superior_id, refetch=True)
            ss = await self.subordinate_statement(superior, subject.entity_id, refetch=True)
        try:
            verify_statement(subject, ss.keys(), now=self._clock(), leeway=self._leeway,
                             signer=f"the keys {superior_id} lists for {subject.entity_id}")
        except UnknownKey:
            if not self.cache.allow_refetch(subject.entity_id, self._clock()):
                raise
            ss = await self.subordinate_statement(superior, subject.entity_id, refetch=True)
            verify_statement(subject, ss.keys(), now=self._clock(), leeway=self._leeway,
                             signer=f"the keys {superior_id} lists for {subject.entity_id}")
        return superior, ss

    # -- resolution ----------------------------------------------------------

    async def resolve(
        self, entity_id: str, entity_type: str | None = None, *, refresh: bool = False
    ) -> TrustChain:
        """Resolve a valid trust chain for ``entity_id`` (§10).

        ``entity_type`` (e.g. ``"openid_provider"``) makes a chain without that metadata
        invalid.  ``refresh`` drops the cached statements about ``entity_id`` first — for
        the A_22861 case "ID token signed with an unknown kid"; it is rate-limited per
        entity and silently ignored when used again within the interval.
        """
        now = self._clock()
        if refresh and self.cache.allow_refetch(entity_id, now):
            self.cache.invalidate_subject(entity_id)
        try:
            leaf = await self.entity_configuration(entity_id)
        except FederationError as exc:
            raise TrustChainError(
                f"no trust chain for {entity_id}: {exc}", [exc]
            ) from exc
        search = _Search(self._order)
        if entity_id in self._anchors:
            self._finish(search, leaf, [], leaf)
        else:
            await self._walk(search, leaf, leaf, [], {entity_id})
        if not search.found:
            reasons = "; ".join(str(e) for e in search.errors) or (
                "it names no authority_hints"
            )
            raise TrustChainError(
                f"no valid trust chain from {entity_id} to a configured trust anchor "
                f"({', '.join(self._order)}): {reasons}",
                search.errors,
            )
        best = min(search.found, key=lambda c: self._order[c.anchor])
        if entity_type is not None and entity_type not in best.resolved_metadata:
            raise TrustChainError(
                f"{entity_id} has no {entity_type!r} metadata in its chain to {best.anchor}"
            )
        return best

    async def _walk(
        self,
        search: _Search,
        leaf: EntityConfiguration,
        subject: EntityConfiguration,
        chain: list[SubordinateStatement],
        visited: set[str],
    ) -> None:
        for hint in subject.authority_hints:
            if search.best_possible():
                return
            is_anchor = hint in self._anchors
            if hint in visited:
                search.errors.append(TrustChainError(
                    f"loop: {subject.entity_id} names {hint} as a superior, which is "
                    "already in the chain"
                ))
                continue
            if not is_anchor and len(chain) + 1 > self.max_path_length:
                search.errors.append(TrustChainError(
                    f"chain via {hint} would be longer than {self.max_path_length} "
                    "intermediates"
                ))
                continue
            try:
                superior, ss = await self._verified_link(hint, subject)
            except FederationError as exc:
                search.errors.append(exc)
                continue
            if is_anchor:
                self._finish(search, leaf, [*chain, ss], superior)
            elif not superior.authority_hints:
                search.errors.append(TrustChainError(
                    f"{hint} is not a configured trust anchor and names no superior"
                ))
            else:
                await self._walk(search, leaf, superior, [*chain, ss], visited | {hint})

    def _finish(
        self,
        search: _Search,
        leaf: EntityConfiguration,
        chain: list[SubordinateStatement],
        anchor: EntityConfiguration,
    ) -> None:
        try:
            allowed = check_constraints(chain)
            crit: set[str] = set()
            for ss in chain:
                crit.update(ss.metadata_policy_crit)
            metadata = resolve_metadata(
                leaf.metadata,
                superior_metadata=chain[0].metadata if chain else None,
                policies=[ss.metadata_policy for ss in reversed(chain)],
                crit=crit,
                allowed_entity_types=allowed,
            )
        except PolicyError as exc:
            search.errors.append(TrustChainError(
                f"chain {leaf.entity_id} → {anchor.entity_id}: metadata policy: {exc}", [exc]
            ))
            return
        except (ConstraintViolation, StatementError) as exc:
            search.errors.append(exc)
            return
        statements: tuple[EntityStatement, ...] = (
            (leaf, *chain, anchor) if chain else (anchor,)
        )
        search.found.append(TrustChain(
            subject=leaf.entity_id,
            anchor=anchor.entity_id,
            statements=statements,
            exp=min(s.exp for s in statements),
            resolved_metadata=metadata,
        ))
