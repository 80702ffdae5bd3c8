"""Per-application key sets: what protocol code signs and decrypts with, rotation, and
the data of gematik's registration (the rotation rules themselves: :mod:`.keyset`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from healthid_broker.crypto.app_signing import RSA_ALGS
from healthid_broker.crypto.envelope import DataKey
from healthid_broker.crypto.keys import public_key_pem
from healthid_broker.storage.models import AppKey, Application

from .data_keys import DataKeys
from .errors import InvalidInput, NotFound
from .keyset import (
    ALL_PURPOSES,
    ON_DEMAND_PURPOSES,
    PURPOSES,
    RotationPolicy,
    new_app_key,
    open_jwk,
    open_mtls,
    open_rsa,
    published,
    rotate_purpose,
)
from .rows import app_row, app_view
from .store import TenantDatabase
from .validation import validate_base_url
from .views import AppKeys, KeyChange, KeyInfo

__all__ = ["ENVIRONMENTS", "KeySets", "ensure_rsa_key", "needs_rsa_key"]

ENVIRONMENTS: tuple[str, ...] = ("tu", "ru", "pu", "sandbox")


def needs_rsa_key(app: Application) -> bool:
    """Whether a client of ``app`` has its ID tokens signed with RS256 or PS256."""
    return any(c.signed_response_alg in RSA_ALGS for c in app.clients)


def ensure_rsa_key(s: Session, app: Application, data_keys: DataKeys, now: float,
                   policy: RotationPolicy) -> KeyChange | None:
    """Give ``app`` a current ``id_token_sig_rsa`` key if it has none yet (inside ``s``'s
    transaction, with ``app`` locked; the first RSA client's key is current at once, as an
    application's first keys are)."""
    rows = s.scalars(select(AppKey).where(
        AppKey.application_id == app.id, AppKey.tenant_id == app.tenant_id,
        AppKey.purpose == "id_token_sig_rsa", AppKey.state.in_(("current", "next"))))
    if rows.first() is not None:
        return None
    dek_id, dek = data_keys.current(s, app.tenant_id)
    row = new_app_key(application_id=app.id, tenant_id=app.tenant_id,
                      short_key=app.short_key, purpose="id_token_sig_rsa", state="current",
                      data_key_id=dek_id, data_key=dek, now=now, policy=policy)
    s.add(row)
    s.flush()
    return KeyChange(row.purpose, row.kid, "activated", now)


class KeySets:
    def __init__(self, db: TenantDatabase, data_keys: DataKeys, policy: RotationPolicy) -> None:
        self.db = db
        self.data_keys = data_keys
        self.policy = policy

    def infos(self, short_key: str) -> tuple[KeyInfo, ...]:
        with self.db.application_transaction(short_key) as (s, tenant_id):
            app = app_row(s, tenant_id, short_key)
            rows = s.scalars(
                select(AppKey)
                .where(AppKey.application_id == app.id, AppKey.tenant_id == tenant_id)
                .order_by(AppKey.created_at)
            )
            return tuple(
                KeyInfo(r.purpose, r.kid, r.state, r.created_at, r.activated_at, r.retired_at,
                        r.not_after)
                for r in rows
            )

    def usable(self, short_key: str, now: float) -> AppKeys:
        """The keys usable at ``now`` (with private parts); see :class:`AppKeys`."""
        with self.db.application_transaction(short_key) as (s, tenant_id):
            app = app_row(s, tenant_id, short_key)
            rows = list(s.scalars(
                select(AppKey)
                .where(AppKey.application_id == app.id, AppKey.tenant_id == tenant_id)
            ))
            by_purpose: dict[str, list[AppKey]] = {p: [] for p in PURPOSES}
            for r in rows:
                by_purpose.setdefault(r.purpose, []).append(r)
            deks: dict[str, DataKey] = {}

            def dek(r: AppKey) -> DataKey:
                if r.data_key_id not in deks:
                    deks[r.data_key_id] = self.data_keys.by_id(s, tenant_id, r.data_key_id)
                return deks[r.data_key_id]

            def pub(purpose: str) -> list[AppKey]:
                out = published(by_purpose[purpose], now, self.policy)
                if not out or out[0].state != "current":
                    raise NotFound(
                        f"application {short_key!r} has no current {purpose} key; "
                        "run `healthid-broker app rotate-keys`"
                    )
                return out

            fed = [open_jwk(r, dek(r)) for r in pub("federation_sig")]
            mtls = [open_mtls(r, dek(r)) for r in pub("mtls")]
            enc = [open_jwk(r, dek(r)) for r in pub("id_token_enc")]
            idsig = [open_jwk(r, dek(r)) for r in pub("id_token_sig")]
            rsa_rows = published(by_purpose.get("id_token_sig_rsa", []), now, self.policy)
            if rsa_rows and rsa_rows[0].state != "current":
                rsa_rows = []  # only a next key (cannot happen after rotate); none usable
            idrsa = [open_rsa(r, dek(r)) for r in rsa_rows]
            return AppKeys(
                short_key=app.short_key,
                federation_signing_key=fed[0],
                federation_keys=tuple(fed),
                mtls=mtls[0],
                mtls_published=tuple(mtls),
                id_token_encryption_keys=tuple(enc),
                id_token_signing_key=idsig[0],
                id_token_signing_keys=tuple(idsig),
                id_token_rsa_keys=tuple(idrsa),
            )

    def rotate(
        self, short_key: str, now: float, *, force: bool = False,
        purposes: Iterable[str] | None = None,
    ) -> tuple[KeyChange, ...]:
        """Do the rotation steps that are due at ``now`` (see :mod:`.keyset`).

        ``force`` publishes a new ``next`` key for every purpose (or the given
        ``purposes``) that has none; it still becomes current only after 24 h (A_24607).
        """
        wanted = tuple(purposes) if purposes is not None else ALL_PURPOSES
        for p in wanted:
            if p not in ALL_PURPOSES:
                raise InvalidInput(
                    f"unknown key purpose {p!r}; one of {', '.join(ALL_PURPOSES)}")
        with self.db.application_transaction(short_key) as (s, tenant_id):
            app = app_row(s, tenant_id, short_key, lock=True)
            rows = list(s.scalars(
                select(AppKey)
                .where(AppKey.application_id == app.id, AppKey.tenant_id == tenant_id)
            ))
            changes: list[KeyChange] = []
            current: tuple[str, DataKey] | None = None
            for purpose in ALL_PURPOSES:
                prow = [r for r in rows if r.purpose == purpose]
                if purpose in ON_DEMAND_PURPOSES and not prow and not needs_rsa_key(app):
                    continue  # no client needs this key (yet)
                result = rotate_purpose(
                    prow, now, self.policy, force=force and purpose in wanted
                )
                changes.extend(result.changes)
                for r in result.remove:
                    s.delete(r)
                if result.create_next:
                    if current is None:
                        current = self.data_keys.current(s, tenant_id)
                    has_current = any(r.state == "current" for r in prow)
                    row = new_app_key(
                        application_id=app.id, tenant_id=tenant_id, short_key=app.short_key,
                        purpose=purpose, state="next" if has_current else "current",
                        data_key_id=current[0], data_key=current[1], now=now,
                        policy=self.policy,
                    )
                    s.add(row)
                    changes.append(
                        KeyChange(purpose, row.kid,
                                  "published-next" if has_current else "activated", now)
                    )
            s.flush()
            if any(c.change != "pending" for c in changes):
                self.db.announce_change(s, short_key)
            return tuple(changes)

    def rotate_due(self, now: float) -> dict[str, tuple[KeyChange, ...]]:
        """:meth:`rotate` for every application (one transaction each, in its tenant);
        returns the changes per short key."""
        out: dict[str, tuple[KeyChange, ...]] = {}
        for short_key, _tenant in self.db.application_directory():
            changes = self.rotate(short_key, now)
            real = tuple(c for c in changes if c.change != "pending")
            if real:
                out[short_key] = real
        return out

    def registration_data(
        self, short_key: str, *, base: str, environment: str, now: float
    ) -> dict[str, Any]:
        """What gematik's RP registration needs (T-23):
        ``{entity_id, organization_name, environment, scopes, keys: [{kid, pem}]}``."""
        if environment not in ENVIRONMENTS:
            raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENTS)}")
        base = validate_base_url(base)
        with self.db.application_transaction(short_key) as (s, tenant_id):
            app = app_view(app_row(s, tenant_id, short_key))
        keys = self.usable(short_key, now)
        return {
            "entity_id": app.entity_id(base),
            "organization_name": app.organization_name,
            "environment": environment,
            "scopes": list(app.scopes),
            "keys": [
                {"kid": k.kid, "pem": public_key_pem(k.public_key)}
                for k in keys.federation_keys
            ],
        }
