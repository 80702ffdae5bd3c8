"""The login transaction as an explicit state machine (docs/login-flow.md).

State values are stable strings — they are written into sealed store entries and
must not change between releases::

        app's /authorize accepted
                  |
                  v
          +---------------+  choose_idp (hosted chooser)
          |    STARTED    |<--------------------+
          |  "started"    |---------------------+
          +---------------+
                  | send_upstream: PAR done, user sent to the IdP
                  v
          +------------------+
          | UPSTREAM_PENDING |   keyed by the broker's own `state` toward the IdP;
          | "upstream_pending"|  holds the upstream room's opaque pending value
          +------------------+
                  | issue_code: IdP ID token validated, claims minimised
                  v
          +---------------+
          |  CODE_ISSUED  |      keyed by the broker's authorization code (≤ 60 s)
          | "code_issued" |
          +---------------+
                  | redeem: app's token request succeeded
                  v
          +---------------+
          |   REDEEMED    |  terminal
          +---------------+

    from every non-terminal state:  fail --> FAILED  ("failed", terminal)

Terminal states keep nothing: they are returned as a :class:`Finished` outcome (for the
usage/audit event — no personal data) and never written to the store (T-01, A_23050).
A login that is abandoned simply runs out: its store entry's TTL is its deadline, and an
entry past its deadline reads as absent (:mod:`.login_store`), so there is no "expired"
event for the service to run.

Every transition is a function that checks the current state at run time and raises
:class:`IllegalTransition` otherwise; transitions of a live transaction past its
deadline (≤ 10 minutes after start) raise :class:`TransactionExpired`.

Serialisation (:func:`encode` / :func:`decode`) is compact JSON with short member
names and a format version per state (:data:`FORMAT_VERSIONS`), so an in-flight login
stays well under 2 KiB and an entry written by an earlier release is either read exactly
or refused as :class:`CorruptTransaction` — never misread.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn, TypeVar

from .. import jsoncodec
from .errors import CorruptTransaction, IllegalTransition, TransactionExpired

__all__ = [
    "CODE_LIFETIME",
    "FORMAT_VERSIONS",
    "MAX_LIFETIME",
    "TRANSITIONS",
    "AppRequest",
    "CodeIssued",
    "Finished",
    "LiveTransaction",
    "LoginState",
    "Started",
    "UpstreamPending",
    "check_transition",
    "choose_idp",
    "decode",
    "encode",
    "fail",
    "issue_code",
    "redeem",
    "send_upstream",
    "start",
]

MAX_LIFETIME = 600.0
"""A whole login, app authorize → code redemption, lives at most 10 minutes (T-01)."""
CODE_LIFETIME = 60.0
"""The broker's authorization code for the app lives at most 60 s (RFC 6749 §4.1.2)."""


class LoginState(StrEnum):
    STARTED = "started"
    UPSTREAM_PENDING = "upstream_pending"
    CODE_ISSUED = "code_issued"
    REDEEMED = "redeemed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({LoginState.REDEEMED, LoginState.FAILED})

TRANSITIONS: Mapping[LoginState, frozenset[LoginState]] = {
    LoginState.STARTED: frozenset(
        {LoginState.STARTED, LoginState.UPSTREAM_PENDING, LoginState.FAILED}),
    LoginState.UPSTREAM_PENDING: frozenset({LoginState.CODE_ISSUED, LoginState.FAILED}),
    LoginState.CODE_ISSUED: frozenset({LoginState.REDEEMED, LoginState.FAILED}),
    LoginState.REDEEMED: frozenset(),
    LoginState.FAILED: frozenset(),
}


def check_transition(src: LoginState, dst: LoginState) -> None:
    """Raise :class:`IllegalTransition` unless ``src → dst`` is in :data:`TRANSITIONS`."""
    if dst not in TRANSITIONS[src]:
        raise IllegalTransition(f"a login in state {src.value!r} cannot move to {dst.value!r}")


def _k(short: str, kind: str, default: Any = dataclasses.MISSING, *, secret: bool = False) -> Any:
    # ``secret``: hidden from repr, so a transaction in a traceback or log line never
    # shows claims, the pairwise subject, nonces, states or the upstream's pending value
    # (GS-A_3813).
    return field(default=default, repr=not secret, metadata={"k": short, "t": kind})


@dataclass(frozen=True)
class AppRequest:
    """The application's validated authorization request (what the broker must echo/check).

    ``application`` is the application's issuer (entity id); it selects the per-application
    keys and pairwise secret. ``scopes`` are the requested scopes *after* the provider
    checked them against the application's allow-list.
    """

    application: str = _k("a", "str")
    client_id: str = _k("c", "str")
    redirect_uri: str = _k("r", "str")
    scopes: tuple[str, ...] = _k("sc", "strs")
    state: str | None = _k("st", "ostr", secret=True)
    nonce: str | None = _k("n", "ostr", secret=True)
    code_challenge: str | None = _k("cc", "ostr", secret=True)
    code_challenge_method: str | None = _k("cm", "ostr")
    acr_values: tuple[str, ...] = _k("acr", "strs", ())
    # OIDC Core §3.1.2.1, passed on in the upstream PAR to force a new authentication
    # (A_23030); omitted from the stored entry when absent
    prompt: str | None = _k("p", "ostr", None)
    max_age: int | None = _k("ma", "oint", None)


@dataclass(frozen=True)
class Started:
    """STARTED: the app's request is accepted; the IdP may still be unknown."""

    txn_id: str = _k("id", "str")
    created_at: float = _k("t0", "num")
    deadline: float = _k("dl", "num")
    app: AppRequest = _k("app", "app")  # noqa: RUF009 - field() with metadata
    idp: str | None = _k("idp", "ostr")

    state = LoginState.STARTED


@dataclass(frozen=True)
class UpstreamPending:
    """UPSTREAM_PENDING: PAR done, the person is at the IdP.

    ``upstream`` is the upstream room's pending value (its own nonce, PKCE verifier, …),
    opaque here: kept as it came and handed back unchanged. The broker's ``state`` toward
    the IdP is not a member: it is the store key that finds this transaction.
    """

    txn_id: str = _k("id", "str")
    created_at: float = _k("t0", "num")
    deadline: float = _k("dl", "num")
    app: AppRequest = _k("app", "app")  # noqa: RUF009 - field() with metadata
    idp: str = _k("idp", "str")
    upstream: bytes = _k("up", "bytes", secret=True)

    state = LoginState.UPSTREAM_PENDING


@dataclass(frozen=True)
class CodeIssued:
    """CODE_ISSUED: the minimised claims and pairwise ``sub`` for the app, keyed by code.

    ``claims`` holds only what :func:`healthid_broker.provider.claims.minimise_claims`
    let through (T-07); the IdP's raw ID token is already discarded (A_23050).
    """

    txn_id: str = _k("id", "str")
    created_at: float = _k("t0", "num")
    deadline: float = _k("dl", "num")
    application: str = _k("a", "str")
    client_id: str = _k("c", "str")
    redirect_uri: str = _k("r", "str")
    nonce: str | None = _k("n", "ostr", secret=True)
    code_challenge: str | None = _k("cc", "ostr", secret=True)
    code_challenge_method: str | None = _k("cm", "ostr")
    scopes: tuple[str, ...] = _k("sc", "strs")
    idp: str = _k("idp", "str")
    subject: str = _k("sub", "str", secret=True)
    claims: Mapping[str, Any] = _k("cl", "obj", secret=True)
    acr: str | None = _k("acr", "ostr")
    amr: tuple[str, ...] = _k("amr", "strs")
    auth_time: int | None = _k("at", "oint")

    state = LoginState.CODE_ISSUED


@dataclass(frozen=True)
class Finished:
    """A terminal outcome. Holds no personal data and is never stored."""

    txn_id: str
    state: LoginState
    reason: str | None = None


LiveTransaction = Started | UpstreamPending | CodeIssued

FORMAT_VERSIONS: Mapping[type[Started] | type[UpstreamPending] | type[CodeIssued], int] = {
    Started: 1,
    UpstreamPending: 2,  # 1 held the upstream state, nonce, verifier and redirect URI apart
    CodeIssued: 1,
}
"""The format version of each state's stored entry. A change of a state's members bumps
its version; an entry of another version is refused (:class:`CorruptTransaction`), which
the provider answers with its "please start again" page."""
_T = TypeVar("_T", Started, UpstreamPending, CodeIssued)


def _require(txn: object, cls: type[_T], dst: LoginState) -> _T:
    src = getattr(txn, "state", None)
    if not isinstance(src, LoginState):
        raise IllegalTransition(f"not a login transaction: {type(txn).__name__}")
    check_transition(src, dst)
    if not isinstance(txn, cls):
        raise IllegalTransition(f"a login in state {src.value!r} cannot move to {dst.value!r}")
    return txn


def _alive(txn: LiveTransaction, now: float) -> None:
    if now >= txn.deadline:
        raise TransactionExpired("the login took too long; please start again")


# --------------------------------------------------------------------------- transitions


def start(
    app: AppRequest,
    *,
    txn_id: str,
    now: float,
    idp: str | None = None,
    lifetime: float = MAX_LIFETIME,
) -> Started:
    """Create a transaction in STARTED (the app's authorize request was accepted)."""
    if not 0 < lifetime <= MAX_LIFETIME:
        raise IllegalTransition(f"login lifetime must be in (0, {MAX_LIFETIME:.0f}] s")
    if not txn_id:
        raise IllegalTransition("a login transaction needs an id")
    return Started(txn_id, now, now + lifetime, app, idp)


def choose_idp(txn: Started, idp: str, *, now: float) -> Started:
    """STARTED → STARTED: the user picked an IdP in the hosted chooser."""
    t = _require(txn, Started, LoginState.STARTED)
    _alive(t, now)
    if not idp:
        raise IllegalTransition("an IdP entity id is required")
    return dataclasses.replace(t, idp=idp)


def send_upstream(txn: Started, *, upstream: bytes, now: float) -> UpstreamPending:
    """STARTED → UPSTREAM_PENDING: PAR accepted, the user is sent to the chosen IdP.

    ``upstream`` is the upstream room's pending value for this login. The broker's
    ``state``/``nonce``/PKCE toward the IdP inside it are the upstream room's own, never
    the app's: the app's values are never passed to it (docs/upstream.md, PAR).
    """
    t = _require(txn, Started, LoginState.UPSTREAM_PENDING)
    _alive(t, now)
    if not t.idp:
        raise IllegalTransition("no IdP was chosen for this login")
    if not upstream:
        raise IllegalTransition("the upstream's pending value is required")
    return UpstreamPending(t.txn_id, t.created_at, t.deadline, t.app, t.idp, upstream)


def issue_code(
    txn: UpstreamPending,
    *,
    subject: str,
    claims: Mapping[str, Any],
    acr: str | None,
    amr: Sequence[str],
    auth_time: int | None,
    now: float,
    code_lifetime: float = CODE_LIFETIME,
) -> CodeIssued:
    """UPSTREAM_PENDING → CODE_ISSUED: the IdP's ID token was validated and minimised.

    ``subject`` is the pairwise ``sub`` for the app; ``claims`` the minimised claims.
    The new deadline is the earlier of the login deadline and ``now + code_lifetime``.
    """
    t = _require(txn, UpstreamPending, LoginState.CODE_ISSUED)
    _alive(t, now)
    if not 0 < code_lifetime <= CODE_LIFETIME:
        raise IllegalTransition(f"code lifetime must be in (0, {CODE_LIFETIME:.0f}] s")
    if not subject:
        raise IllegalTransition("a subject is required")
    app = t.app
    return CodeIssued(
        txn_id=t.txn_id,
        created_at=t.created_at,
        deadline=min(t.deadline, now + code_lifetime),
        application=app.application,
        client_id=app.client_id,
        redirect_uri=app.redirect_uri,
        nonce=app.nonce,
        code_challenge=app.code_challenge,
        code_challenge_method=app.code_challenge_method,
        scopes=app.scopes,
        idp=t.idp,
        subject=subject,
        claims=dict(claims),
        acr=acr,
        amr=tuple(amr),
        auth_time=auth_time,
    )


def redeem(txn: CodeIssued, *, now: float) -> Finished:
    """CODE_ISSUED → REDEEMED: the app's token request succeeded (code single-use)."""
    t = _require(txn, CodeIssued, LoginState.REDEEMED)
    _alive(t, now)
    return Finished(t.txn_id, LoginState.REDEEMED)


def fail(txn: LiveTransaction, reason: str) -> Finished:
    """any live state → FAILED: the IdP could not be reached, its answer or the app's
    token request was refused. ``reason`` is an OAuth error code, never personal data."""
    src = getattr(txn, "state", None)
    if not isinstance(src, LoginState):
        raise IllegalTransition(f"not a login transaction: {type(txn).__name__}")
    check_transition(src, LoginState.FAILED)
    return Finished(txn.txn_id, LoginState.FAILED, reason)


# --------------------------------------------------------------------------- encoding


def _enc_value(kind: str, value: Any) -> Any:
    if kind == "app":
        return _to_obj(value)
    if kind == "strs":
        return list(value)
    if kind == "obj":
        return dict(value)
    if kind == "bytes":
        return base64.urlsafe_b64encode(value).decode("ascii")
    return value


_TABLES: dict[type, tuple[tuple[str, str, str], ...]] = {}


def _table(cls: type) -> tuple[tuple[str, str, str], ...]:
    """(field name, stored short name, kind) per field — computed once per class."""
    table = _TABLES.get(cls)
    if table is None:
        table = tuple((f.name, f.metadata["k"], f.metadata["t"])
                      for f in dataclasses.fields(cls))
        _TABLES[cls] = table
    return table


def _to_obj(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, short, kind in _table(type(obj)):
        value = getattr(obj, name)
        if value is None or (kind == "strs" and not value):
            continue  # omitted == default, keeps entries compact
        out[short] = _enc_value(kind, value)
    return out


def _dec_value(kind: str, value: Any, name: str) -> Any:
    ok: bool
    if kind in ("str", "ostr"):
        ok = isinstance(value, str)
    elif kind == "num":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "oint":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "strs":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if ok:
            return tuple(value)
    elif kind == "obj":
        ok = isinstance(value, dict)
    elif kind == "app":
        return _from_obj(AppRequest, value)
    elif kind == "bytes":
        if not isinstance(value, str):
            _wrong_type(name)
        try:
            return base64.b64decode(value, altchars=b"-_", validate=True)
        except (ValueError, binascii.Error):
            raise CorruptTransaction(f"stored login member {name!r} is not base64url") from None
    else:  # a programming error in the field table
        raise AssertionError(kind)
    if not ok:
        _wrong_type(name)
    return value


def _wrong_type(name: str) -> NoReturn:
    raise CorruptTransaction(f"stored login member {name!r} has the wrong type")


_D = TypeVar("_D")


def _from_obj(cls: type[_D], data: Any) -> _D:
    if not isinstance(data, dict):
        raise CorruptTransaction("stored login is not a JSON object")
    kwargs: dict[str, Any] = {}
    table = _table(cls)
    for name, short, kind in table:
        if short in data:
            kwargs[name] = _dec_value(kind, data[short], name)
        elif kind == "strs":
            kwargs[name] = ()
        elif kind in ("ostr", "oint"):
            kwargs[name] = None
        else:
            raise CorruptTransaction(f"stored login lacks the member {name!r}")
    extra = set(data) - {short for _n, short, _k in table}
    if extra:
        raise CorruptTransaction(f"stored login has unknown members {sorted(extra)}")
    return cls(**kwargs)


def encode(txn: LiveTransaction) -> bytes:
    """Compact JSON: ``{"v":<format version>,"s":<state>, …short members…}``."""
    body = _to_obj(txn)
    body["v"] = FORMAT_VERSIONS[type(txn)]
    body["s"] = txn.state.value
    return jsoncodec.dumps(body)


_BY_STATE: Mapping[str, type[Started] | type[UpstreamPending] | type[CodeIssued]] = {
    LoginState.STARTED.value: Started,
    LoginState.UPSTREAM_PENDING.value: UpstreamPending,
    LoginState.CODE_ISSUED.value: CodeIssued,
}


def decode(data: bytes, expected: type[_T]) -> _T:
    """Decode :func:`encode` output and insist on the ``expected`` state's class."""
    try:
        obj = jsoncodec.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise CorruptTransaction("stored login is not JSON") from None
    if not isinstance(obj, dict):
        raise CorruptTransaction("stored login is not a JSON object")
    version = obj.pop("v", None)
    state = obj.pop("s", None)
    cls = _BY_STATE.get(state) if isinstance(state, str) else None
    if cls is not expected:
        raise CorruptTransaction(
            f"stored login is in state {state!r}, expected {expected.state.value!r}"
        )
    if version != FORMAT_VERSIONS[expected]:
        raise CorruptTransaction(
            f"stored login ({expected.state.value}) has the format version {version!r}, "
            f"this release reads {FORMAT_VERSIONS[expected]}: it was written by another "
            "release while the login was in flight"
        )
    return _from_obj(expected, obj)
