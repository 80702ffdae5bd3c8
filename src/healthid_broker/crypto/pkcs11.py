"""PKCS#11 (hardware or cloud HSM): the KEK and ES256 signing keys inside a token (T-25).

Built on python-pkcs11; tested against SoftHSM2 (docs/keys.md says how to set up either).

* :class:`Pkcs11KeyProvider` — a :class:`~healthid_broker.crypto.key_provider.KeyProvider`
  whose KEK is an AES-256 secret key object generated in the token: ``CKA_TOKEN``,
  ``CKA_PRIVATE``, ``CKA_SENSITIVE``, not ``CKA_EXTRACTABLE``, usable only for
  ``CKA_ENCRYPT``/``CKA_DECRYPT``. ``wrap`` is ``C_Encrypt`` with ``CKM_AES_GCM`` (random
  96-bit IV, the associated data, 128-bit tag) in the token and returns
  ``iv(12) || ciphertext || tag(16)`` — the layout of the file and env providers; ``unwrap``
  is ``C_Decrypt``. The KEK's bytes never leave the token. ``kek_id`` is the hex of the key's
  ``CKA_ID`` (8 random bytes when this module generates it).
* :class:`Pkcs11EcSigner` — an EC P-256 key pair in the token (private key sensitive and not
  extractable); ``sign`` hashes with SHA-256 and signs the digest with ``CKM_ECDSA`` in the
  token. PKCS#11 returns ECDSA signatures as ``r || s`` (each the 32-byte length of the
  group order), which is exactly the JWS ES256 form (RFC 7518 §3.4), so no DER conversion
  is needed. The public key is exported as a :class:`~healthid_broker.crypto.jose.JWK`.

Configuration: ``pkcs11:<absolute module path>?token=<token label>&key=<KEK label>``
(``key`` defaults to ``healthid-broker-kek``; values are percent-decoded), e.g.
``pkcs11:/usr/lib/softhsm/libsofthsm2.so?token=broker``. The user PIN never appears on the
command line: it comes from the file named by ``pin-file=<path>`` in the specification or by
the environment variable ``HEALTHID_BROKER_PKCS11_PIN_FILE`` (checked like every secret file:
owner-only, not empty), or else from the environment variable ``HEALTHID_BROKER_PKCS11_PIN``.
A ``pin`` or ``pin-value`` in the specification is refused.

Sessions: PKCS#11 keeps the login state per application and token, not per session (a
second ``C_Login`` fails, a ``C_Logout`` logs out every session). So each process holds one
logged-in read/write session per (module, token), shared by every provider and signer on
that token and used by one thread at a time. After a ``fork`` the child re-initialises the
library and logs in afresh (PKCS#11 v2.40 §6.7.7).

Creating a key under a label, safely from any number of processes (and hosts sharing a
network HSM) at once — PKCS#11 has no "create if absent" and no lock, so:

1. find the key by its label; exactly one: use it (two or more: refuse, the label is
   ambiguous);
2. none: generate a candidate under the private label ``<label>.pending.<random>``;
3. list every key of that type whose label is ``<label>`` or ``<label>.pending.*``: if the
   candidate is alone, relabel it ``<label>`` — it is the key; otherwise destroy the
   candidate, wait a random moment and start again at 1.

A candidate is relabelled only when it was alone at step 3, and a kept key is never
destroyed, so two processes can never both keep one (whichever checked later would have seen
the other's key). Nobody uses a candidate before it is relabelled, so a key another process
destroys was never used. Two racing processes may both give up their candidates and retry;
the random waits make that end quickly. A process killed between 2 and 3 leaves a
``<label>.pending.*`` object that blocks later creation with a clear error naming it; delete
it (e.g. with ``pkcs11-tool --delete-object``) after making sure no creation is running.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from .. import jsoncodec
from .jose import JWK, JWS_ALG, b64u_encode
from .key_provider import KeyProviderError, read_secret_file

__all__ = [
    "DEFAULT_KEK_LABEL",
    "PIN_ENV_VAR",
    "PIN_FILE_ENV_VAR",
    "Pkcs11Config",
    "Pkcs11EcSigner",
    "Pkcs11KeyProvider",
]

PIN_ENV_VAR = "HEALTHID_BROKER_PKCS11_PIN"
PIN_FILE_ENV_VAR = "HEALTHID_BROKER_PKCS11_PIN_FILE"
DEFAULT_KEK_LABEL = "healthid-broker-kek"
PENDING_MARK = ".pending."
_SCHEME = "pkcs11:"
_NONCE_LEN = 12
_TAG_BITS = 128
_ID_LEN = 8
_P256_SIG_LEN = 64
_CREATE_ATTEMPTS = 40
_MAX_LABEL = 64  # token labels are at most 32 bytes (CK_TOKEN_INFO); object labels: ours


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the token is and how to log in: parsed from a ``pkcs11:`` specification."""

    module: Path
    token: str
    key: str = DEFAULT_KEK_LABEL
    pin: str = field(default="", repr=False)

    @classmethod
    def parse(cls, spec: str, environ: Mapping[str, str] | None = None) -> Pkcs11Config:
        """``pkcs11:<module path>?token=<label>[&key=<label>][&pin-file=<path>]``; the PIN
        from ``pin-file``, ``$HEALTHID_BROKER_PKCS11_PIN_FILE`` or
        ``$HEALTHID_BROKER_PKCS11_PIN`` (in that order)."""
        env = os.environ if environ is None else environ
        if not spec.startswith(_SCHEME):
            raise KeyProviderError(f"a PKCS#11 key provider starts with {_SCHEME!r}")
        path, _, query = spec[len(_SCHEME):].partition("?")
        if not path or not Path(path).is_absolute():
            raise KeyProviderError(
                "the PKCS#11 key provider needs the absolute path of the token's PKCS#11 "
                "module, e.g. pkcs11:/usr/lib/softhsm/libsofthsm2.so?token=broker")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError as exc:
            raise KeyProviderError(f"malformed PKCS#11 key provider options: {exc}") from None
        options: dict[str, str] = {}
        for name, value in pairs:
            if name in ("pin", "pin-value"):
                raise KeyProviderError(
                    "the PKCS#11 PIN may not be part of the key provider option (it would show "
                    f"in the process list); use pin-file=PATH, ${PIN_FILE_ENV_VAR} or "
                    f"${PIN_ENV_VAR}")
            if name not in ("token", "key", "pin-file"):
                raise KeyProviderError(
                    f"unknown PKCS#11 key provider option {name!r} (known: token, key, "
                    "pin-file)")
            if name in options:
                raise KeyProviderError(f"PKCS#11 key provider option {name!r} given twice")
            options[name] = value
        token = options.get("token", "")
        key = options.get("key", DEFAULT_KEK_LABEL)
        for name, value in (("token", token), ("key", key)):
            if not value or len(value) > _MAX_LABEL or not value.isprintable():
                raise KeyProviderError(
                    f"PKCS#11 key provider option {name}= must be a printable label of 1 to "
                    f"{_MAX_LABEL} characters")
        if PENDING_MARK in key:
            raise KeyProviderError(f"a key label may not contain {PENDING_MARK!r}")
        pin_file = options.get("pin-file") or env.get(PIN_FILE_ENV_VAR)
        if pin_file:
            pin = _read_pin_file(Path(pin_file))
        elif env.get(PIN_ENV_VAR):
            pin = env[PIN_ENV_VAR]
        else:
            raise KeyProviderError(
                f"no PIN for PKCS#11 token {token!r}: set {PIN_ENV_VAR}, or name a PIN file "
                f"with {PIN_FILE_ENV_VAR} or pin-file=PATH")
        return cls(Path(path), token, key, pin)

    def with_key(self, label: str) -> Pkcs11Config:
        """The same token, another key label."""
        return Pkcs11Config(self.module, self.token, label, self.pin)


def _read_pin_file(path: Path) -> str:
    data = read_secret_file(path)
    try:
        pin = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise KeyProviderError(f"PIN file {path} is not UTF-8 text") from None
    if not pin:
        raise KeyProviderError(f"PIN file {path} is empty")
    return pin


# --------------------------------------------------------------------------- sessions


class _TokenSession:
    """The process's logged-in read/write session on one token, for one thread at a time."""

    def __init__(self, session: pkcs11.Session, pin_digest: bytes) -> None:
        self.session = session
        self.pin_digest = pin_digest
        self.lock = threading.RLock()


class _Registry:
    """The process's token sessions by (module path, token label)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.sessions: dict[tuple[str, str], _TokenSession] = {}


_registry = _Registry()


def _describe(exc: pkcs11.PKCS11Error) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _token_session(config: Pkcs11Config) -> _TokenSession:
    pin_digest = hashlib.sha256(config.pin.encode("utf-8")).digest()
    key = (str(config.module), config.token)
    with _registry.lock:
        if os.getpid() != _registry.pid:  # forked: the parent's handles are not ours
            modules = {module for module, _ in _registry.sessions}
            _registry.sessions.clear()
            _registry.pid = os.getpid()
            for module in modules:
                try:
                    pkcs11.lib(module).reinitialize()
                except pkcs11.PKCS11Error as exc:
                    raise KeyProviderError(
                        f"cannot re-initialise PKCS#11 module {module} after fork: "
                        f"{_describe(exc)}") from None
        held = _registry.sessions.get(key)
        if held is not None:
            if not hmac.compare_digest(held.pin_digest, pin_digest):
                raise KeyProviderError(
                    f"PKCS#11 token {config.token!r} is already open in this process with "
                    "another PIN")
            return held
        try:
            lib = pkcs11.lib(str(config.module))
        except pkcs11.PKCS11Error as exc:
            raise KeyProviderError(
                f"cannot load PKCS#11 module {config.module}: {_describe(exc)}") from None
        try:
            token = lib.get_token(token_label=config.token)
        except pkcs11.NoSuchToken:
            raise KeyProviderError(
                f"PKCS#11 module {config.module} has no token labelled {config.token!r}"
            ) from None
        except pkcs11.MultipleTokensReturned:
            raise KeyProviderError(
                f"PKCS#11 module {config.module} has several tokens labelled "
                f"{config.token!r}; give them distinct labels") from None
        except pkcs11.PKCS11Error as exc:
            raise KeyProviderError(
                f"cannot list the tokens of {config.module}: {_describe(exc)}") from None
        try:
            session = token.open(rw=True, user_pin=config.pin)
        except pkcs11.PinIncorrect:
            raise KeyProviderError(
                f"the PIN for PKCS#11 token {config.token!r} is wrong (the token locks the "
                "user PIN after a number of failures)") from None
        except (pkcs11.PinLocked, pkcs11.PinExpired, pkcs11.UserPinNotInitialized) as exc:
            raise KeyProviderError(
                f"cannot log in to PKCS#11 token {config.token!r}: {_describe(exc)}; the "
                "token's security officer must reset the user PIN") from None
        except pkcs11.PKCS11Error as exc:
            raise KeyProviderError(
                f"cannot open a session on PKCS#11 token {config.token!r}: {_describe(exc)}"
            ) from None
        held = _TokenSession(session, pin_digest)
        _registry.sessions[key] = held
        return held


# --------------------------------------------------------------------------- find or create


def _labelled(
    session: pkcs11.Session, object_class: ObjectClass, key_type: KeyType, label: str
) -> list[Any]:
    return list(session.get_objects({Attribute.CLASS: object_class,
                                     Attribute.KEY_TYPE: key_type, Attribute.LABEL: label}))


_TRANSIENT = (pkcs11.ObjectHandleInvalid, pkcs11.FunctionFailed, pkcs11.GeneralError)


def _labels(session: pkcs11.Session, object_class: ObjectClass, key_type: KeyType) -> list[str]:
    """The labels of every object of the class and type. Another process may destroy an
    object while we list (a rival's candidate): then the listing starts again."""
    for _ in range(_CREATE_ATTEMPTS):
        try:
            return sorted(str(o[Attribute.LABEL]) for o in session.get_objects(
                {Attribute.CLASS: object_class, Attribute.KEY_TYPE: key_type}))
        except pkcs11.ObjectHandleInvalid:
            continue
    raise KeyProviderError("the token's objects kept changing while being listed")


def _find_or_create(
    held: _TokenSession,
    object_class: ObjectClass,
    key_type: KeyType,
    label: str,
    generate: Callable[[str], list[Any]] | None,
) -> Any:
    """The object of ``object_class`` labelled ``label``; with ``generate`` (which makes the
    objects under the label it is given, the one of ``object_class`` first) created when
    missing, by the protocol in the module docstring."""
    session = held.session
    what = f"{key_type.name} key {label!r} in PKCS#11 token {session.token.label!r}"
    found = _labelled(session, object_class, key_type, label)
    if len(found) == 1 or generate is None:
        return _one(found, what)
    # Creators on this host take turns (SoftHSM2's file store is not consistent between
    # processes while one writes: two creators may each miss the other's candidate); the
    # candidate protocol below still separates creators on different hosts of one HSM.
    with _host_lock(session.token.label, label):
        return _create(session, object_class, key_type, label, generate=generate, what=what)


def _one(found: list[Any], what: str) -> Any:
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise KeyProviderError(
            f"{len(found)} objects are labelled as the {what}; the label must name one")
    raise KeyProviderError(f"no {what}; create it first (docs/keys.md)")


@contextlib.contextmanager
def _host_lock(token_label: str, label: str) -> Any:
    """An exclusive lock of this host's processes for creating ``label`` in the token."""
    digest = hashlib.sha256(f"{token_label}\n{label}".encode()).hexdigest()[:24]
    path = Path(tempfile.gettempdir()) / f"healthid-broker-pkcs11-{digest}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise KeyProviderError(f"cannot open the key-creation lock {path}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _create(session: pkcs11.Session, object_class: ObjectClass, key_type: KeyType,
            label: str, *, generate: Callable[[str], list[Any]], what: str) -> Any:
    stale: list[str] = []
    for attempt in range(_CREATE_ATTEMPTS):
        found = _labelled(session, object_class, key_type, label)
        if found:
            return _one(found, what)
        pending = f"{label}{PENDING_MARK}{secrets.token_hex(8)}"
        mine: list[Any] = []
        try:
            mine = generate(pending)
            rivals = [other for other in _labels(session, object_class, key_type)
                      if other == label
                      or (other.startswith(label + PENDING_MARK) and other != pending)]
            if not rivals:
                for obj in reversed(mine):  # the searched-for object last
                    obj[Attribute.LABEL] = label
                return mine[0]
            for obj in mine:
                obj.destroy()
        except _TRANSIENT:
            # the store changed under us (SoftHSM2's file store, written by another process
            # at this moment); drop our candidate if it exists and start again
            for obj in mine:
                with contextlib.suppress(pkcs11.PKCS11Error):
                    if obj[Attribute.LABEL] == pending:
                        obj.destroy()
            rivals = []
        stale = [r for r in rivals if r != label]
        time.sleep((0.005 + secrets.randbelow(1000) / 1000 * 0.02) * (1 + attempt))
    raise KeyProviderError(
        f"could not create the {what}: other creators kept racing"
        + (f"; the candidates {stale} may be left over from a killed creation: delete them "
           "once no creation is running" if stale else ""))


def _kek_id(obj: Any, label: str) -> str:
    raw = bytes(obj[Attribute.ID])
    if not raw:
        raise KeyProviderError(
            f"PKCS#11 key {label!r} has no CKA_ID; the broker stores it as the KEK id next to "
            "every wrapped data key, so give the key a unique CKA_ID")
    return raw.hex()


# --------------------------------------------------------------------------- KEK


class Pkcs11KeyProvider:
    """A KEK held in a PKCS#11 token; wrap/unwrap are AES-256-GCM operations in the token.

    With ``create`` the KEK is generated in the token when no key carries its label
    (the race-safe protocol of the module docstring); otherwise a missing key is an error.
    """

    def __init__(self, config: Pkcs11Config, *, create: bool = False) -> None:
        self.config = config
        self._held = _token_session(config)
        generate = self._generate if create else None
        with self._held.lock:
            try:
                self._key = _find_or_create(self._held, ObjectClass.SECRET_KEY, KeyType.AES,
                                            config.key, generate)
                self._check_usable()
                self._kek_id = _kek_id(self._key, config.key)
            except pkcs11.PKCS11Error as exc:
                raise KeyProviderError(
                    f"PKCS#11 KEK {config.key!r}: {_describe(exc)}") from None

    @classmethod
    def from_spec(
        cls, spec: str, environ: Mapping[str, str] | None = None, *, create: bool = False
    ) -> Pkcs11KeyProvider:
        return cls(Pkcs11Config.parse(spec, environ), create=create)

    def _generate(self, label: str) -> list[Any]:
        key = self._held.session.generate_key(
            KeyType.AES, 256, id=secrets.token_bytes(_ID_LEN), label=label, store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template={Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                      Attribute.EXTRACTABLE: False})
        return [key]

    def _check_usable(self) -> None:
        attrs = self._key.get_attributes([Attribute.VALUE_LEN, Attribute.SENSITIVE,
                                          Attribute.EXTRACTABLE])
        if attrs[Attribute.VALUE_LEN] != 32:
            raise KeyProviderError(f"PKCS#11 KEK {self.config.key!r} is not an AES-256 key")
        if not attrs[Attribute.SENSITIVE] or attrs[Attribute.EXTRACTABLE]:
            raise KeyProviderError(
                f"PKCS#11 KEK {self.config.key!r} may leave the token (CKA_SENSITIVE false or "
                "CKA_EXTRACTABLE true); generate a non-extractable key")

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_LEN)
        with self._held.lock:
            try:
                sealed = self._key.encrypt(key, mechanism=Mechanism.AES_GCM,
                                           mechanism_param=pkcs11.GCMParams(nonce, aad,
                                                                            _TAG_BITS))
            except pkcs11.PKCS11Error as exc:
                raise KeyProviderError(
                    f"PKCS#11 token failed to wrap a data key: {_describe(exc)}") from None
        return nonce + bytes(sealed)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < _NONCE_LEN + _TAG_BITS // 8:
            raise KeyProviderError("wrapped key is truncated")
        params = pkcs11.GCMParams(blob[:_NONCE_LEN], aad, _TAG_BITS)
        with self._held.lock:
            try:
                return bytes(self._key.decrypt(blob[_NONCE_LEN:], mechanism=Mechanism.AES_GCM,
                                               mechanism_param=params))
            except pkcs11.PKCS11Error as exc:
                # SoftHSM reports a failed tag check as CKR_GENERAL_ERROR, others as
                # CKR_ENCRYPTED_DATA_INVALID: both mean "does not open"
                raise KeyProviderError(
                    "wrapped key does not open with this KEK (modified data, or a different "
                    f"KEK; the token said {_describe(exc)})") from None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(token={self.config.token!r}, key={self.config.key!r}, "
                f"kek_id={self._kek_id!r})")


# --------------------------------------------------------------------------- ES256


class Pkcs11EcSigner:
    """An ES256 signing key (EC P-256) held in a PKCS#11 token, found by label.

    With ``create`` the key pair is generated in the token when missing. ``jwk`` is the
    public key (``kid`` defaults to its RFC 7638 thumbprint, ``use=sig``, ``alg=ES256``).
    """

    def __init__(
        self, config: Pkcs11Config, label: str, *, create: bool = False, kid: str | None = None
    ) -> None:
        if not label or PENDING_MARK in label or len(label) > _MAX_LABEL:
            raise KeyProviderError(f"unusable PKCS#11 key label {label!r}")
        self.config = config
        self.label = label
        self._held = _token_session(config)
        generate = self._generate if create else None
        with self._held.lock:
            try:
                self._private = _find_or_create(self._held, ObjectClass.PRIVATE_KEY,
                                                KeyType.EC, label, generate)
                public = _labelled(self._held.session, ObjectClass.PUBLIC_KEY, KeyType.EC,
                                   label)
                if len(public) != 1:
                    raise KeyProviderError(
                        f"PKCS#11 EC key {label!r}: expected one public key object with the "
                        f"label, found {len(public)}")
                der = encode_ec_public_key(public[0])
            except pkcs11.PKCS11Error as exc:
                raise KeyProviderError(f"PKCS#11 EC key {label!r}: {_describe(exc)}") from None
        public_key = load_der_public_key(der)
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
                public_key.curve, ec.SECP256R1):
            raise KeyProviderError(f"PKCS#11 key {label!r} is not an EC P-256 key")
        bare = JWK(public_key)
        self.jwk = JWK(public_key, kid=kid or bare.thumbprint(), use="sig", alg=JWS_ALG)

    def _generate(self, label: str) -> list[Any]:
        params = self._held.session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True)
        public, private = params.generate_keypair(
            id=secrets.token_bytes(_ID_LEN), label=label, store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template={Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                              Attribute.EXTRACTABLE: False})
        return [private, public]

    @property
    def kid(self) -> str:
        assert self.jwk.kid is not None
        return self.jwk.kid

    def sign(self, data: bytes) -> bytes:
        """The ES256 signature of ``data``: ``r || s`` (64 bytes), as JWS wants it."""
        digest = hashlib.sha256(data).digest()
        with self._held.lock:
            try:
                signature = bytes(self._private.sign(digest, mechanism=Mechanism.ECDSA))
            except pkcs11.PKCS11Error as exc:
                raise KeyProviderError(
                    f"PKCS#11 token failed to sign with {self.label!r}: {_describe(exc)}"
                ) from None
        if len(signature) != _P256_SIG_LEN:
            raise KeyProviderError(
                f"PKCS#11 token returned a {len(signature)}-byte ECDSA signature; P-256 "
                f"needs r || s of {_P256_SIG_LEN} bytes")
        return signature

    def sign_jws(
        self, payload: Mapping[str, Any] | bytes, *, typ: str | None = None,
        extra_headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A compact JWS (RFC 7515 §7.1) over ``payload``, signed in the token; the header
        carries ``alg=ES256`` and this key's ``kid``."""
        header: dict[str, Any] = {"alg": JWS_ALG, "kid": self.kid}
        if typ is not None:
            header["typ"] = typ
        if extra_headers:
            clash = sorted(set(extra_headers).intersection(("alg", "kid", "crit", "b64")))
            if clash:
                raise KeyProviderError(
                    f"these header parameters are not the caller's to set: {clash}")
            header.update(extra_headers)
        body = payload if isinstance(payload, bytes) else jsoncodec.dumps(payload)
        signing_input = (b64u_encode(jsoncodec.dumps(header)) + "." + b64u_encode(body))
        return signing_input + "." + b64u_encode(self.sign(signing_input.encode("ascii")))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token={self.config.token!r}, label={self.label!r})"
