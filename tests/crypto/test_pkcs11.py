"""The PKCS#11 key provider and ES256 signer against a real SoftHSM2 token.

A session-wide SoftHSM2 configuration in a temporary directory (its own token directory,
``SOFTHSM2_CONF``) holds two tokens made with ``softhsm2-util``: ``hidb-test`` for the tests
and ``hidb-pin`` that only the wrong-PIN test logs in to (PKCS#11 login state is per process
and token, so a token already logged in would not check the PIN again).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jws as joserfc_jws
from joserfc.jwk import ECKey

from healthid_broker.crypto.envelope import (
    DataKey,
    EnvelopeError,
    unwrap_data_key,
    wrap_data_key,
)
from healthid_broker.crypto.jose import JWSSignatureError, parse_jws, verify_jws
from healthid_broker.crypto.key_provider import KeyProvider, KeyProviderError, load_key_provider
from healthid_broker.crypto.pkcs11 import (
    PIN_ENV_VAR,
    PIN_FILE_ENV_VAR,
    Pkcs11Config,
    Pkcs11EcSigner,
    Pkcs11KeyProvider,
)

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "hidb-test"
PIN_TOKEN = "hidb-pin"
PIN = "4711-user"
SO_PIN = "0815-so"


@dataclass(frozen=True)
class SoftHsm:
    conf: Path

    def spec(self, key: str, token: str = TOKEN) -> str:
        return f"pkcs11:{MODULE}?token={token}&key={key}"

    def config(self, key: str = "unused") -> Pkcs11Config:
        return Pkcs11Config.parse(self.spec(key), {PIN_ENV_VAR: PIN})


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    for label in (TOKEN, PIN_TOKEN):
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                        "--pin", PIN, "--so-pin", SO_PIN],
                       env=env, check=True, capture_output=True)
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read by the module's C_Initialize
    try:
        yield SoftHsm(conf)
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


def _label() -> str:
    return f"kek-{uuid.uuid4().hex[:12]}"


def _objects(label: str, object_class: pkcs11.ObjectClass) -> list[str]:
    """Labels of the objects of ``object_class`` whose label starts with ``label``, through
    a session of our own (it shares the process's login: the caller has made a provider)."""
    token = pkcs11.lib(MODULE).get_token(token_label=TOKEN)
    with token.open() as session:
        return sorted(str(o[pkcs11.Attribute.LABEL])
                      for o in session.get_objects({pkcs11.Attribute.CLASS: object_class})
                      if str(o[pkcs11.Attribute.LABEL]).startswith(label))


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("spec", "message"), [
    ("pkcs11:slot=0", "absolute path"),
    ("pkcs11:", "absolute path"),
    ("pkcs11:relative/lib.so?token=t", "absolute path"),
    (f"pkcs11:{MODULE}", "token= must be"),
    (f"pkcs11:{MODULE}?token=", "token= must be"),
    (f"pkcs11:{MODULE}?token=t&pin=1234", "may not be part"),
    (f"pkcs11:{MODULE}?token=t&pin-value=1234", "may not be part"),
    (f"pkcs11:{MODULE}?token=t&slot=1", "unknown PKCS#11 key provider option"),
    (f"pkcs11:{MODULE}?token=t&token=u", "given twice"),
    (f"pkcs11:{MODULE}?token=t&key=a.pending.b", "may not contain"),
    (f"pkcs11:{MODULE}?token=t&&", "malformed"),
    (f"pkcs11:{MODULE}?token=" + "x" * 65, "token= must be"),
])
def test_bad_specifications_are_refused_clearly(spec: str, message: str) -> None:
    with pytest.raises(KeyProviderError, match=message):
        Pkcs11Config.parse(spec, {PIN_ENV_VAR: PIN})


def test_pin_comes_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    spec = f"pkcs11:{MODULE}?token=broker%20hsm"
    with pytest.raises(KeyProviderError, match=PIN_ENV_VAR):
        Pkcs11Config.parse(spec, {})
    config = Pkcs11Config.parse(spec, {PIN_ENV_VAR: PIN})
    assert (config.token, config.key, config.pin) == ("broker hsm", "healthid-broker-kek", PIN)
    assert PIN not in repr(config)
    pin_file = tmp_path / "pin"
    pin_file.write_text("from-file\n")
    pin_file.chmod(0o644)
    with pytest.raises(KeyProviderError, match="accessible by group/others"):
        Pkcs11Config.parse(spec, {PIN_FILE_ENV_VAR: str(pin_file)})
    pin_file.chmod(0o600)
    assert Pkcs11Config.parse(spec, {PIN_FILE_ENV_VAR: str(pin_file),
                                     PIN_ENV_VAR: PIN}).pin == "from-file"
    assert Pkcs11Config.parse(f"{spec}&pin-file={pin_file}", {}).pin == "from-file"
    with pytest.raises(KeyProviderError, match="does not exist"):
        Pkcs11Config.parse(f"{spec}&pin-file={tmp_path / 'nope'}", {})


def test_a_missing_module_is_a_clear_error() -> None:
    config = Pkcs11Config.parse("pkcs11:/nonexistent/libhsm.so?token=t", {PIN_ENV_VAR: PIN})
    with pytest.raises(KeyProviderError, match="cannot load PKCS#11 module"):
        Pkcs11KeyProvider(config)


# --------------------------------------------------------------------------- KEK


@pytest.mark.slow
def test_kek_is_generated_in_the_token_then_found_by_label(softhsm: SoftHsm) -> None:
    label = _label()
    with pytest.raises(KeyProviderError, match="no AES key"):
        Pkcs11KeyProvider(softhsm.config(label))
    created = Pkcs11KeyProvider(softhsm.config(label), create=True)
    assert len(created.kek_id) == 16
    found = load_key_provider(softhsm.spec(label), "/nonexistent", {PIN_ENV_VAR: PIN},
                              create=False)
    assert isinstance(found, Pkcs11KeyProvider)
    assert found.kek_id == created.kek_id
    again = Pkcs11KeyProvider(softhsm.config(label), create=True)
    assert again.kek_id == created.kek_id
    assert _objects(label, pkcs11.ObjectClass.SECRET_KEY) == [label]
    other = Pkcs11KeyProvider(softhsm.config(_label()), create=True)
    assert other.kek_id != created.kek_id


@pytest.mark.slow
def test_wrap_unwrap_round_trip_through_the_envelope(softhsm: SoftHsm) -> None:
    provider: KeyProvider = Pkcs11KeyProvider(softhsm.config(_label()), create=True)
    assert isinstance(provider, KeyProvider)
    dek = DataKey.generate()
    wrapped = wrap_data_key(provider, dek, "tenant-1")
    assert wrapped.kek_id == provider.kek_id
    assert len(wrapped.blob) == 12 + 32 + 16
    assert dek.raw() not in wrapped.blob
    assert unwrap_data_key(provider, wrapped, "tenant-1").raw() == dek.raw()
    assert wrap_data_key(provider, dek, "tenant-1").blob != wrapped.blob  # fresh IV
    with pytest.raises(EnvelopeError, match="does not open"):
        unwrap_data_key(provider, wrapped, "tenant-2")


@pytest.mark.slow
def test_tampered_or_foreign_wrapped_keys_do_not_open(softhsm: SoftHsm) -> None:
    provider = Pkcs11KeyProvider(softhsm.config(_label()), create=True)
    other = Pkcs11KeyProvider(softhsm.config(_label()), create=True)
    blob = provider.wrap(b"k" * 32, b"aad")
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(KeyProviderError, match="does not open"):
            provider.unwrap(bytes(tampered), b"aad")
    with pytest.raises(KeyProviderError, match="truncated"):
        provider.unwrap(blob[:27], b"aad")
    with pytest.raises(KeyProviderError, match="does not open"):
        provider.unwrap(blob[:-1], b"aad")
    with pytest.raises(KeyProviderError, match="does not open"):
        other.unwrap(blob, b"aad")
    assert provider.unwrap(blob, b"aad") == b"k" * 32  # the session still works


@pytest.mark.slow
def test_the_kek_cannot_be_read_out_of_the_token(softhsm: SoftHsm) -> None:
    label = _label()
    Pkcs11KeyProvider(softhsm.config(label), create=True)
    token = pkcs11.lib(MODULE).get_token(token_label=TOKEN)
    with token.open() as session:
        key = session.get_key(pkcs11.ObjectClass.SECRET_KEY, pkcs11.KeyType.AES, label=label)
        assert key[pkcs11.Attribute.SENSITIVE] is True
        assert key[pkcs11.Attribute.EXTRACTABLE] is False
        assert key[pkcs11.Attribute.WRAP] is False
        with pytest.raises(pkcs11.AttributeSensitive):
            key[pkcs11.Attribute.VALUE]


@pytest.mark.slow
def test_an_extractable_key_under_the_label_is_refused(softhsm: SoftHsm) -> None:
    label = _label()
    Pkcs11KeyProvider(softhsm.config("warm-up"), create=True)  # log the process in
    token = pkcs11.lib(MODULE).get_token(token_label=TOKEN)
    with token.open(rw=True) as session:
        session.generate_key(pkcs11.KeyType.AES, 256, id=b"\x01" * 8, label=label, store=True,
                             template={pkcs11.Attribute.EXTRACTABLE: True,
                                       pkcs11.Attribute.SENSITIVE: False})
    with pytest.raises(KeyProviderError, match="may leave the token"):
        Pkcs11KeyProvider(softhsm.config(label))


@pytest.mark.slow
def test_wrong_pin_and_unknown_token_are_clear_errors(softhsm: SoftHsm) -> None:
    wrong = Pkcs11Config.parse(softhsm.spec("k", PIN_TOKEN), {PIN_ENV_VAR: "not-the-pin"})
    with pytest.raises(KeyProviderError, match=f"PIN for PKCS#11 token '{PIN_TOKEN}' is wrong"
                       ) as info:
        Pkcs11KeyProvider(wrong, create=True)
    assert "not-the-pin" not in str(info.value)
    missing = Pkcs11Config.parse(softhsm.spec("k", "no-such-token"), {PIN_ENV_VAR: PIN})
    with pytest.raises(KeyProviderError, match="no token labelled 'no-such-token'"):
        Pkcs11KeyProvider(missing)
    # the right PIN still works after the failure
    right = Pkcs11Config.parse(softhsm.spec("k", PIN_TOKEN), {PIN_ENV_VAR: PIN})
    assert Pkcs11KeyProvider(right, create=True).kek_id


# --------------------------------------------------------------------------- ES256


@pytest.mark.slow
def test_es256_signatures_verify_with_the_exported_public_key(softhsm: SoftHsm) -> None:
    label = f"sig-{uuid.uuid4().hex[:12]}"
    with pytest.raises(KeyProviderError, match="no EC key"):
        Pkcs11EcSigner(softhsm.config(), label)
    signer = Pkcs11EcSigner(softhsm.config(), label, create=True)
    jwk = signer.jwk
    assert jwk.private_key is None
    assert (jwk.kid, jwk.use, jwk.alg) == (jwk.thumbprint(), "sig", "ES256")
    assert Pkcs11EcSigner(softhsm.config(), label).jwk.public_dict() == jwk.public_dict()

    # the raw signature: r || s, checked by cryptography
    data = b"checkpoint body\n"
    signature = signer.sign(data)
    assert len(signature) == 64
    der = encode_dss_signature(int.from_bytes(signature[:32]), int.from_bytes(signature[32:]))
    jwk.public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        jwk.public_key.verify(der, data + b"x", ec.ECDSA(hashes.SHA256()))

    # a compact JWS, checked by joserfc directly and through the broker's JOSE policy
    token = signer.sign_jws({"iss": "https://broker.example", "n": 1}, typ="entity-statement+jwt")
    public = ECKey.import_key(jwk.public_dict())
    obj = joserfc_jws.deserialize_compact(token, public, algorithms=["ES256"])
    assert obj.protected == {"alg": "ES256", "kid": jwk.kid, "typ": "entity-statement+jwt"}
    parsed = parse_jws(token, expected_typ="entity-statement+jwt")
    assert verify_jws(parsed, [jwk]) == jwk
    assert parsed.payload_json() == {"iss": "https://broker.example", "n": 1}
    head, payload, sig = token.split(".")
    forged = parse_jws(f"{head}.{signer.sign_jws({'n': 2}).split('.')[1]}.{sig}")
    with pytest.raises(JWSSignatureError):
        verify_jws(forged, [jwk])
    assert payload
    with pytest.raises(KeyProviderError, match="not the caller's"):
        signer.sign_jws(b"x", extra_headers={"alg": "none"})


@pytest.mark.slow
def test_the_signing_key_is_not_extractable(softhsm: SoftHsm) -> None:
    label = f"sig-{uuid.uuid4().hex[:12]}"
    Pkcs11EcSigner(softhsm.config(), label, create=True)
    token = pkcs11.lib(MODULE).get_token(token_label=TOKEN)
    with token.open() as session:
        key = session.get_key(pkcs11.ObjectClass.PRIVATE_KEY, pkcs11.KeyType.EC, label=label)
        assert key[pkcs11.Attribute.EXTRACTABLE] is False
        with pytest.raises(pkcs11.AttributeSensitive):
            key[pkcs11.Attribute.VALUE]


# --------------------------------------------------------------------------- concurrency

_CREATOR = textwrap.dedent("""
    import sys
    from healthid_broker.crypto.pkcs11 import Pkcs11Config, Pkcs11EcSigner, Pkcs11KeyProvider
    spec, sig_label = sys.argv[1], sys.argv[2]
    config = Pkcs11Config.parse(spec)
    # Log in before the race: SoftHSM2's file store may hide the token from a process that
    # initialises while another process writes to it (docs/keys.md).
    Pkcs11KeyProvider(config.with_key("warm-up"))
    print("ready", flush=True)
    sys.stdin.readline()  # all start creating together
    kek = Pkcs11KeyProvider(config, create=True)
    signer = Pkcs11EcSigner(config, sig_label, create=True)
    blob = kek.wrap(b"d" * 32, b"ctx")
    print(kek.kek_id, signer.jwk.thumbprint(), blob.hex())
""")


@pytest.mark.slow
def test_concurrent_creation_of_one_label_ends_with_one_key(softhsm: SoftHsm) -> None:
    label, sig_label = _label(), f"sig-{uuid.uuid4().hex[:12]}"
    Pkcs11KeyProvider(softhsm.config("warm-up"), create=True)  # also logs this process in
    env = {**os.environ, "SOFTHSM2_CONF": str(softhsm.conf), PIN_ENV_VAR: PIN}
    procs = [subprocess.Popen([sys.executable, "-c", _CREATOR, softhsm.spec(label), sig_label],
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr
    results = []
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(out.split())
    assert len({r[0] for r in results}) == 1, results
    assert len({r[1] for r in results}) == 1, results
    assert _objects(label, pkcs11.ObjectClass.SECRET_KEY) == [label]
    assert _objects(sig_label, pkcs11.ObjectClass.PRIVATE_KEY) == [sig_label]
    assert _objects(sig_label, pkcs11.ObjectClass.PUBLIC_KEY) == [sig_label]
    # what every process wrapped opens here: they all used the one key
    provider = Pkcs11KeyProvider(softhsm.config(label))
    assert provider.kek_id == results[0][0]
    for r in results:
        assert provider.unwrap(bytes.fromhex(r[2]), b"ctx") == b"d" * 32
