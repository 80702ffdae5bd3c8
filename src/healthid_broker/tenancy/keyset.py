"""Per-application key sets and their rotation (pure logic over :class:`AppKey` rows).

Purposes:

* ``federation_sig`` — signs the application's entity configuration (ES256). These keys
  are registered at gematik out of band, so they rotate only on request (``--force``).
* ``mtls`` — the self-signed TLS client certificate (≤ 398 days, A_23185-01) and its key,
  published as a sig JWK with exactly one ``x5c`` (A_23183). Renewed ``mtls_renew_before``
  ahead of expiry.
* ``id_token_enc`` — the ECDH-ES key the IdPs encrypt ID tokens to (A_23194).
* ``id_token_sig`` — the broker's own OIDC ID-token signing key toward the apps (ES256).
* ``id_token_sig_rsa`` — the RSA key (3072 bit) for clients that registered
  ``id_token_signed_response_alg`` RS256 or PS256. Created with the first such client of
  the application (:data:`ON_DEMAND_PURPOSES`), then rotated like ``id_token_sig``.

States ``next`` → ``current`` → ``retired``:

* a new key is published as ``next`` and becomes ``current`` only when it has been
  published for at least ``publish_ahead`` (24 h, A_24607);
* a ``retired`` key stays published (encryption keys: usable for decryption) for
  ``retired_publication`` (24 h ≥ the 86400 s maximum lifetime of an entity statement,
  A_23034, A_28209), then it is removed;
* an mTLS certificate that has already expired is replaced at once (there is nothing to
  protect any more by waiting).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from healthid_broker.crypto.app_signing import (
    RSASigningKey,
    load_rsa_private_key_pem,
    rsa_private_key_pem,
)
from healthid_broker.crypto.envelope import DataKey
from healthid_broker.crypto.jose import JWK
from healthid_broker.crypto.keys import (
    MAX_MTLS_CERT_DAYS,
    cert_der_b64,
    cert_pem,
    load_private_key_pem,
    new_ec_key,
    private_key_pem,
    self_signed_client_cert,
    uuid7,
)
from healthid_broker.storage.models import AppKey

from .views import KeyChange, MtlsIdentity

__all__ = [
    "ALL_PURPOSES",
    "ON_DEMAND_PURPOSES",
    "PURPOSES",
    "RotationPolicy",
    "new_app_key",
    "open_jwk",
    "open_mtls",
    "open_rsa",
    "published",
    "rotate_purpose",
]

PURPOSES: tuple[str, ...] = ("federation_sig", "mtls", "id_token_enc", "id_token_sig")
"""The purposes every application has from its creation on."""
ON_DEMAND_PURPOSES: tuple[str, ...] = ("id_token_sig_rsa",)
"""Purposes whose first key is created when a client needs it."""
ALL_PURPOSES: tuple[str, ...] = PURPOSES + ON_DEMAND_PURPOSES
DAY = 86400.0


@dataclass(frozen=True)
class RotationPolicy:
    """Timing of key rotation, in seconds. ``None`` lifetime = rotate only on request."""

    publish_ahead: float = DAY  # A_24607
    retired_publication: float = DAY  # A_28209 (entity statements live <= 86400 s)
    federation_sig_lifetime: float | None = None  # registered at gematik: manual
    id_token_sig_lifetime: float | None = 180 * DAY
    id_token_enc_lifetime: float | None = 180 * DAY
    mtls_cert_days: int = 365  # <= 398, A_23185-01
    mtls_renew_before: float = 30 * DAY

    def __post_init__(self) -> None:
        if self.publish_ahead < DAY:
            raise ValueError("a next key must be published for at least 24 h (A_24607)")
        if self.retired_publication < DAY:
            raise ValueError("retired keys must stay published for at least 24 h (A_28209)")
        if not 1 <= self.mtls_cert_days <= MAX_MTLS_CERT_DAYS:
            raise ValueError(f"mTLS certificates may live 1..{MAX_MTLS_CERT_DAYS} days")
        if self.mtls_renew_before <= self.publish_ahead:
            raise ValueError("mTLS renewal must start earlier than the publication lead")

    def lifetime(self, purpose: str) -> float | None:
        return {
            "federation_sig": self.federation_sig_lifetime,
            "id_token_sig": self.id_token_sig_lifetime,
            "id_token_sig_rsa": self.id_token_sig_lifetime,
            "id_token_enc": self.id_token_enc_lifetime,
        }.get(purpose)


def _aad(application_id: str, purpose: str, kid: str) -> bytes:
    return f"app-key|{application_id}|{purpose}|{kid}".encode()


def new_app_key(
    *,
    application_id: str,
    tenant_id: str,
    short_key: str,
    purpose: str,
    state: str,
    data_key_id: str,
    data_key: DataKey,
    now: float,
    policy: RotationPolicy,
) -> AppKey:
    """Generate one key with a UUIDv7 kid (A_28208), sealed: EC P-256 (A_23196), or RSA
    3072 bit for ``id_token_sig_rsa``."""
    kid = uuid7(int(now * 1000))
    if purpose == "id_token_sig_rsa":
        rsa_key = RSASigningKey.generate(kid=kid)
        assert rsa_key.private_key is not None
        return _row(application_id=application_id, tenant_id=tenant_id, purpose=purpose,
                    kid=kid, state=state, data_key_id=data_key_id, data_key=data_key,
                    now=now, public_jwk=rsa_key.public_dict(),
                    private_pem=rsa_private_key_pem(rsa_key.private_key))
    key = new_ec_key()
    cert_text: str | None = None
    not_after: float | None = None
    if purpose in ("federation_sig", "id_token_sig"):
        jwk = JWK.from_private_key(key, kid=kid, use="sig", alg="ES256")
    elif purpose == "id_token_enc":
        jwk = JWK.from_private_key(key, kid=kid, use="enc", alg="ECDH-ES")
    elif purpose == "mtls":
        start = dt.datetime.fromtimestamp(now - 300, dt.UTC)
        cert = self_signed_client_cert(
            key, f"healthid-broker {short_key}", not_before=start, days=policy.mtls_cert_days
        )
        jwk = JWK.from_private_key(key, kid=kid, use="sig", alg="ES256", x5c=[cert_der_b64(cert)])
        cert_text = cert_pem(cert).decode("ascii")
        not_after = cert.not_valid_after_utc.timestamp()
    else:
        raise ValueError(f"unknown key purpose {purpose!r}")
    return _row(application_id=application_id, tenant_id=tenant_id, purpose=purpose, kid=kid,
                state=state, data_key_id=data_key_id, data_key=data_key, now=now,
                public_jwk=jwk.public_dict(), private_pem=private_key_pem(key),
                cert_text=cert_text, not_after=not_after)


def _row(*, application_id: str, tenant_id: str, purpose: str, kid: str, state: str,
         data_key_id: str, data_key: DataKey, now: float, public_jwk: dict[str, Any],
         private_pem: bytes, cert_text: str | None = None,
         not_after: float | None = None) -> AppKey:
    return AppKey(
        id=str(uuid.uuid4()),
        application_id=application_id,
        tenant_id=tenant_id,
        data_key_id=data_key_id,
        purpose=purpose,
        kid=kid,
        state=state,
        public_jwk=public_jwk,
        sealed_private=data_key.seal(private_pem, _aad(application_id, purpose, kid)),
        cert_pem=cert_text,
        not_after=not_after,
        created_at=now,
        activated_at=now if state == "current" else None,
        retired_at=None,
    )


def open_jwk(row: AppKey, data_key: DataKey) -> JWK:
    """The row's key with its private part (unsealed)."""
    pem = data_key.open(row.sealed_private, _aad(row.application_id, row.purpose, row.kid))
    pub = JWK.from_dict(row.public_jwk)
    return JWK.from_private_key(
        load_private_key_pem(pem), kid=row.kid, use=pub.use, alg=pub.alg, x5c=pub.x5c
    )


def open_rsa(row: AppKey, data_key: DataKey) -> RSASigningKey:
    """The row's RSA key with its private part (unsealed)."""
    pem = data_key.open(row.sealed_private, _aad(row.application_id, row.purpose, row.kid))
    return RSASigningKey.from_private_key(load_rsa_private_key_pem(pem), kid=row.kid)


def open_mtls(row: AppKey, data_key: DataKey) -> MtlsIdentity:
    jwk = open_jwk(row, data_key)
    assert row.cert_pem is not None and row.not_after is not None and jwk.private_key
    return MtlsIdentity(
        kid=row.kid,
        cert_pem=row.cert_pem,
        x5c=jwk.x5c or (),
        not_after=row.not_after,
        key_pem=private_key_pem(jwk.private_key).decode("ascii"),
        jwk=jwk,
    )


_ORDER = {"current": 0, "next": 1, "retired": 2}


def published(rows: Sequence[AppKey], now: float, policy: RotationPolicy) -> list[AppKey]:
    """Keys to publish (and, for encryption, to decrypt with): current, next, and retired
    ones still inside their publication window (A_28209); ordered current, next, retired."""
    out = [
        r
        for r in rows
        if r.state in ("current", "next")
        or (r.retired_at is not None and now < r.retired_at + policy.retired_publication)
    ]
    return sorted(out, key=lambda r: (_ORDER.get(r.state, 3), -r.created_at))


@dataclass
class PurposeRotation:
    """What :func:`rotate_purpose` decided: changes made, a key to create, rows to drop."""

    changes: list[KeyChange]
    create_next: bool
    remove: list[AppKey]


def _due(current: AppKey, now: float, policy: RotationPolicy) -> bool:
    if current.purpose == "mtls":
        assert current.not_after is not None
        return now >= current.not_after - policy.mtls_renew_before
    lifetime = policy.lifetime(current.purpose)
    if lifetime is None:
        return False
    since = current.activated_at if current.activated_at is not None else current.created_at
    # create the next key early enough that it can switch at the end of the lifetime
    return now >= since + lifetime - policy.publish_ahead


def rotate_purpose(
    rows: Sequence[AppKey], now: float, policy: RotationPolicy, *, force: bool = False
) -> PurposeRotation:
    """Advance the key rows of one purpose (mutates states in place; see module doc)."""
    changes: list[KeyChange] = []
    currents = sorted((r for r in rows if r.state == "current"), key=lambda r: r.created_at)
    nexts = sorted((r for r in rows if r.state == "next"), key=lambda r: r.created_at)
    current = currents[-1] if currents else None
    nxt = nexts[0] if nexts else None
    promoted = False
    if nxt is not None:
        expired = (
            current is not None
            and current.not_after is not None
            and now >= current.not_after
        )
        if now >= nxt.created_at + policy.publish_ahead or current is None or expired:
            for old in currents:
                old.state = "retired"
                old.retired_at = now
                changes.append(KeyChange(old.purpose, old.kid, "retired", now))
            nxt.state = "current"
            nxt.activated_at = now
            changes.append(KeyChange(nxt.purpose, nxt.kid, "activated", now))
            current, nxt, promoted = nxt, None, True
        else:
            changes.append(
                KeyChange(nxt.purpose, nxt.kid, "pending", nxt.created_at + policy.publish_ahead)
            )
    create_next = (
        nxt is None
        and not promoted
        and (current is None or force or _due(current, now, policy))
    )
    remove = [
        r
        for r in rows
        if r.state == "retired"
        and r.retired_at is not None
        and now >= r.retired_at + policy.retired_publication
    ]
    for r in remove:
        changes.append(KeyChange(r.purpose, r.kid, "removed", now))
    return PurposeRotation(changes, create_next, remove)
