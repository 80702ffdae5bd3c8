"""SQLAlchemy 2 models of tenants, applications, clients and per-application keys.

There is deliberately no column for identity data of insured persons (KVNR, names,
birthdate, e-mail — T-01, docs/toms.md): the database holds
configuration and key material only. Private keys are stored sealed (envelope
encryption, T-24); client secrets only as HMAC-SHA256 digests.

Timestamps are float Unix seconds, set from the caller's clock (``now``).
Every change here needs an Alembic migration (``storage/migrations/versions``); a test
fails when the models and the migrations drift apart.

Tenant separation (T-28): every tenant-owned table carries ``tenant_id`` itself, so its
PostgreSQL row-level-security policy is one comparison (see :mod:`.rls`). A row's
``tenant_id`` cannot disagree with its parent's: the foreign keys to ``applications`` and
``tenant_data_keys`` are composite (``(application_id, tenant_id)``,
``(data_key_id, tenant_id)``). A new tenant-owned table needs the column and its policy
in the migration that creates it; a test fails otherwise.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)

    applications: Mapped[list[Application]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", passive_deletes=True
    )
    data_keys: Mapped[list[TenantDataKey]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", passive_deletes=True
    )


class TenantDataKey(Base):
    """A per-tenant data key, wrapped by the KEK named ``kek_id`` (T-24)."""

    __tablename__ = "tenant_data_keys"
    __table_args__ = (UniqueConstraint("id", "tenant_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Float)

    tenant: Mapped[Tenant] = relationship(back_populates="data_keys")


class Application(Base):
    """A registered application = one federation entity ``<base>/<short_key>``."""

    __tablename__ = "applications"
    __table_args__ = (UniqueConstraint("id", "tenant_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    short_key: Mapped[str] = mapped_column(String(32), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    organization_name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    required_acr: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    tenant: Mapped[Tenant] = relationship(back_populates="applications")
    clients: Mapped[list[Client]] = relationship(
        back_populates="application", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Client.created_at",
    )
    keys: Mapped[list[AppKey]] = relationship(
        back_populates="application", cascade="all, delete-orphan", passive_deletes=True,
        order_by="AppKey.created_at",
    )


class Client(Base):
    """An OIDC client of an application (toward the app, the broker is the OP)."""

    __tablename__ = "clients"
    __table_args__ = (
        UniqueConstraint("application_id", "name"),
        ForeignKeyConstraint(
            ["application_id", "tenant_id"], ["applications.id", "applications.tenant_id"],
            ondelete="CASCADE",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    application_id: Mapped[str] = mapped_column(String(36), index=True)
    tenant_id: Mapped[str] = mapped_column(String(36))
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    auth_method: Mapped[str] = mapped_column(String(32))
    secret_digest: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    # the client's id_token_signed_response_alg: ES256 (default), RS256 or PS256
    signed_response_alg: Mapped[str] = mapped_column(String(8), default="ES256",
                                              server_default="ES256")
    # RFC 9126 §5 require_pushed_authorization_requests (migration 0004)
    require_par: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    application: Mapped[Application] = relationship(back_populates="clients")


class AppKey(Base):
    """One key of an application's key set, with its rotation state and timestamps.

    ``purpose``: ``federation_sig`` | ``mtls`` | ``id_token_enc`` | ``id_token_sig`` |
    ``id_token_sig_rsa``;
    ``state``: ``next`` → ``current`` → ``retired`` (A_24607, A_28209).
    ``created_at`` is when the key was first published.
    """

    __tablename__ = "app_keys"
    __table_args__ = (
        Index("ix_app_keys_application_purpose", "application_id", "purpose"),
        ForeignKeyConstraint(
            ["application_id", "tenant_id"], ["applications.id", "applications.tenant_id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["data_key_id", "tenant_id"], ["tenant_data_keys.id", "tenant_data_keys.tenant_id"]
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    application_id: Mapped[str] = mapped_column(String(36))
    tenant_id: Mapped[str] = mapped_column(String(36))
    data_key_id: Mapped[str] = mapped_column(String(36))
    purpose: Mapped[str] = mapped_column(String(24))
    kid: Mapped[str] = mapped_column(String(36), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    sealed_private: Mapped[bytes] = mapped_column(LargeBinary)
    cert_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    not_after: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    activated_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    retired_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    application: Mapped[Application] = relationship(back_populates="keys")
