"""Key and certificate generation for federation entities and the local CA.

* kids are UUIDv7 (gematik A_28208, RFC 9562 §5.7);
* the mTLS client certificate is self-signed and valid for at most 398 days (A_23185-01);
* a tiny local CA issues TLS server certificates for the sandbox and the demo.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time
import uuid
from base64 import b64encode
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .jose import JWK

MAX_MTLS_CERT_DAYS = 398  # A_23185-01


def uuid7(now_ms: int | None = None) -> str:
    """A UUIDv7 string (RFC 9562 §5.7): 48-bit Unix ms timestamp, then random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def signing_jwk(key: ec.EllipticCurvePrivateKey | None = None, kid: str | None = None) -> JWK:
    return JWK.from_private_key(key or new_ec_key(), kid=kid or uuid7(), use="sig", alg="ES256")


def encryption_jwk(key: ec.EllipticCurvePrivateKey | None = None, kid: str | None = None) -> JWK:
    # A_23194: the enc key carries its alg.
    return JWK.from_private_key(key or new_ec_key(), kid=kid or uuid7(), use="enc", alg="ECDH-ES")


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_private_key_pem(data: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an EC private key")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_der_b64(cert: x509.Certificate) -> str:
    """The standard (not url-safe) base64 DER that ``x5c`` carries (RFC 7517 §4.7)."""
    return b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def self_signed_client_cert(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    not_before: dt.datetime | None = None,
    days: int = 365,
) -> x509.Certificate:
    """A self-signed TLS client certificate for the RP's mTLS (RFC 8705 §2.2)."""
    if days > MAX_MTLS_CERT_DAYS:
        raise ValueError(f"mTLS certificates may be valid for at most {MAX_MTLS_CERT_DAYS} days")
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class IssuedCert:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def write(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        with open(cert_path, "wb") as fh:
            fh.write(cert_pem(self.cert))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_key_pem(self.key))


class LocalCA:
    """A throw-away certificate authority for local TLS (sandbox, demo, tests)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def create(cls, name: str = "healthid-broker local CA", days: int = 825) -> LocalCA:
        key = new_ec_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> LocalCA:
        with open(cert_path, "rb") as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
        with open(key_path, "rb") as fh:
            key = load_private_key_pem(fh.read())
        return cls(key, cert)

    def issue_server_cert(self, hosts: Sequence[str], days: int = 397) -> IssuedCert:
        key = new_ec_key()
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCert(key, cert)
