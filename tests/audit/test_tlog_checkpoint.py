"""Signed checkpoints (c2sp.org/tlog-checkpoint in a c2sp.org/signed-note): published note
vectors, round trips, tampering, and a fuzzed parser that only ever raises CheckpointError."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.audit.checkpoint import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    Ed25519CheckpointSigner,
    VerifierKey,
    key_id,
    open_checkpoint,
    open_note,
    parse_note,
    sign_checkpoint,
    sign_note,
)
from healthid_broker.audit.merkle import MerkleTree, ProofError, verify_consistency

# --- Published vectors -----------------------------------------------------------------------
# golang.org/x/mod/sumdb/note (package documentation and note_test.go): the PeterNeumann key,
# its private key (a documented test key) and the signed quotation; the EnochRoot cosignature.
NEUMANN_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
NEUMANN_SKEY_SEED = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # 0x01 || Ed25519 seed
NEUMANN_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
NEUMANN_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngot"
    "pRZb6KE6RyyBwJnAM=\n"
).encode()
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnW"
    "Lox33WWd1RvMc+QQ=\n"
).encode()
# c2sp.org/signed-note, "Verifier keys", Example.
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONn"
    "cAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()


def neumann_signer() -> Ed25519CheckpointSigner:
    raw = base64.b64decode(NEUMANN_SKEY_SEED)
    assert raw[0] == 0x01
    return Ed25519CheckpointSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(raw[1:]))


def test_published_go_note_verifies() -> None:
    vkey = VerifierKey.parse(NEUMANN_VKEY)
    assert str(vkey) == NEUMANN_VKEY
    assert vkey.key_id.hex() == "c74f20a3"
    assert open_note(NEUMANN_TEXT + b"\n" + NEUMANN_SIG, vkey) == NEUMANN_TEXT


def test_signing_with_the_published_key_reproduces_the_published_line() -> None:
    signer = neumann_signer()
    assert str(VerifierKey.for_signer(signer)) == NEUMANN_VKEY
    # Ed25519 is deterministic (RFC 8032): the same bytes as the Go package.
    assert sign_note(NEUMANN_TEXT, [signer]) == NEUMANN_TEXT + b"\n" + NEUMANN_SIG


def test_published_cosigned_note_verifies_for_each_key() -> None:
    msg = NEUMANN_TEXT + b"\n" + NEUMANN_SIG + ENOCH_SIG
    assert open_note(msg, VerifierKey.parse(NEUMANN_VKEY)) == NEUMANN_TEXT
    assert open_note(msg, VerifierKey.parse(ENOCH_VKEY)) == NEUMANN_TEXT
    _, sigs = parse_note(msg)
    assert [(s.name, s.key_id.hex()) for s in sigs] == [
        ("PeterNeumann", "c74f20a3"), ("EnochRoot", "af0cfe78")]


def test_published_c2sp_example_verifies() -> None:
    vkey = VerifierKey.parse(C2SP_VKEY)
    assert open_note(C2SP_NOTE, vkey) == b"This is an example message.\n"
    with pytest.raises(CheckpointError):
        open_note(C2SP_NOTE, VerifierKey.parse(NEUMANN_VKEY))


def test_key_id_is_the_recommended_hash() -> None:
    pub = VerifierKey.parse(C2SP_VKEY).public_key
    assert key_id("example.com/foo", pub) == hashlib.sha256(
        b"example.com/foo\n\x01" + pub).digest()[:4]
    assert key_id("example.com/foo", pub).hex() == "530d903a"


# --- Round trips ---------------------------------------------------------------------------------

ORIGIN = "broker.example/audit"
ROOT = hashlib.sha256(b"root").digest()


@pytest.fixture(scope="module")
def signer() -> Ed25519CheckpointSigner:
    return Ed25519CheckpointSigner.generate(ORIGIN)


@pytest.fixture(scope="module")
def vkey(signer: Ed25519CheckpointSigner) -> VerifierKey:
    return VerifierKey.parse(str(VerifierKey.for_signer(signer)))


def test_checkpoint_round_trip(signer: Ed25519CheckpointSigner, vkey: VerifierKey) -> None:
    for cp in (
        Checkpoint(ORIGIN, 0, hashlib.sha256(b"").digest()),
        Checkpoint(ORIGIN, 20852163, ROOT),
        Checkpoint(ORIGIN, 2**64 - 1, ROOT, ("segment 3", "prev AAAA")),
    ):
        msg = sign_checkpoint(cp, signer)
        assert open_checkpoint(msg, vkey) == cp
        assert Checkpoint.from_text(cp.to_text()) == cp


def test_checkpoint_text_is_the_c2sp_layout(signer: Ed25519CheckpointSigner) -> None:
    cp = Checkpoint(ORIGIN, 7, ROOT, ("ext",))
    msg = sign_checkpoint(cp, signer).decode()
    text, sigs = msg.split("\n\n")
    assert text.split("\n") == [ORIGIN, "7", base64.b64encode(ROOT).decode(), "ext"]
    assert sigs.startswith(f"— {ORIGIN} ") and sigs.endswith("\n") and sigs.count("\n") == 1
    raw = base64.b64decode(sigs.split(" ")[2])
    assert raw[:4] == key_id(ORIGIN, signer.public_key) and len(raw) == 4 + 64


def test_a_signer_behind_the_protocol(vkey: VerifierKey, signer: Ed25519CheckpointSigner) -> None:
    class RemoteSigner:
        """Stands in for an HSM: only name, public key and sign() are visible."""

        name = ORIGIN
        public_key = signer.public_key
        calls: list[bytes] = []  # noqa: RUF012

        def sign(self, message: bytes) -> bytes:
            self.calls.append(message)
            return signer.sign(message)

    remote = RemoteSigner()
    assert isinstance(remote, CheckpointSigner)
    cp = Checkpoint(ORIGIN, 3, ROOT)
    assert open_checkpoint(sign_checkpoint(cp, remote), vkey) == cp
    assert remote.calls == [cp.to_text()]


def test_a_signer_returning_garbage_is_refused(signer: Ed25519CheckpointSigner) -> None:
    class Broken:
        name = ORIGIN
        public_key = signer.public_key

        def sign(self, message: bytes) -> bytes:
            return b"\x00" * 10

    with pytest.raises(CheckpointError):
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), Broken())


def test_an_auditor_checks_two_checkpoints_and_a_consistency_proof(
    signer: Ed25519CheckpointSigner, vkey: VerifierKey
) -> None:
    log = MerkleTree()
    for i in range(5):
        log.append(f"entry {i}".encode())
    old = sign_checkpoint(Checkpoint(ORIGIN, log.size, log.root()), signer)
    for i in range(5, 13):
        log.append(f"entry {i}".encode())
    new = sign_checkpoint(Checkpoint(ORIGIN, log.size, log.root()), signer)
    a, b = open_checkpoint(old, vkey), open_checkpoint(new, vkey)
    verify_consistency(a.size, b.size, a.root_hash, b.root_hash, log.consistency_proof(a.size))
    # A log that rewrote entry 2 after the old checkpoint cannot prove consistency with it.
    forked = MerkleTree(log.leaf_hashes[:2])
    for i in range(2, 13):
        forked.append(f"rewritten {i}".encode())
    with pytest.raises(ProofError):
        verify_consistency(a.size, forked.size, a.root_hash, forked.root(),
                           forked.consistency_proof(a.size))


# --- Tampering and strictness -------------------------------------------------------------------


@pytest.fixture(scope="module")
def good(signer: Ed25519CheckpointSigner) -> bytes:
    return sign_checkpoint(Checkpoint(ORIGIN, 1234, ROOT, ("ext",)), signer)


def _replace_line(msg: bytes, index: int, new: str) -> bytes:
    lines = msg.decode().split("\n")
    lines[index] = new
    return "\n".join(lines).encode()


@pytest.mark.parametrize(
    ("index", "new"),
    [
        (0, "broker.example/other"),
        (0, ORIGIN + " "),
        (1, "1235"),
        (1, "01234"),
        (1, " 1234"),
        (1, "1234 "),
        (1, "+1234"),
        (1, "1_234"),
        (1, "١٢٣٤"),  # Arabic-Indic digits: int() would take them
        (1, "0x4d2"),
        (2, base64.b64encode(hashlib.sha256(b"other").digest()).decode()),
        (2, base64.urlsafe_b64encode(ROOT).decode().rstrip("=")),
        (2, base64.b64encode(ROOT[:31]).decode()),
        (3, "ext2"),
        (3, ""),
    ],
)
def test_every_line_is_protected(good: bytes, vkey: VerifierKey, index: int, new: str) -> None:
    with pytest.raises(CheckpointError):
        open_checkpoint(_replace_line(good, index, new), vkey)


def test_non_canonical_numbers_and_hashes_are_refused_before_any_signature() -> None:
    root = base64.b64encode(ROOT).decode()
    for size in ("01", "-1", "1.0", "1e3", " 1", "18446744073709551616", "9" * 30, "", "١"):
        with pytest.raises(CheckpointError):
            Checkpoint.from_text(f"o\n{size}\n{root}\n".encode())
    # 32 bytes are 43 base64 characters and one "="; the last character carries 2 unused
    # bits. Setting one gives the same bytes to a lenient decoder, but is not canonical.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sloppy = root[:-2] + alphabet[alphabet.index(root[-2]) ^ 1] + "="
    assert base64.b64decode(sloppy) == ROOT and sloppy != root
    for bad in (sloppy, root[:-1], root + "\t", root.rstrip("="), " " + root, root + "=="):
        with pytest.raises(CheckpointError):
            Checkpoint.from_text(f"o\n1\n{bad}\n".encode())
    assert Checkpoint.from_text(f"o\n18446744073709551615\n{root}\n".encode()).size == 2**64 - 1


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.replace(b"\n\n", b"\n \n"),  # blank line is not blank
        lambda m: m.replace(b"\n\n", b"\n\n\n"),  # a second blank line
        lambda m: m.replace(b"\n", b"\r\n"),
        lambda m: m.replace("— ".encode(), b"- "),
        lambda m: m.replace("— ".encode(), " — ".encode()),
        lambda m: m.replace(f"— {ORIGIN} ".encode(), f"— {ORIGIN}  ".encode()),
        lambda m: m.replace(f"— {ORIGIN} ".encode(), f"—  {ORIGIN} ".encode()),
        lambda m: m[:-1],  # no final newline
        lambda m: m + b" ",
        lambda m: m + b"\n",
        lambda m: m[: m.rindex(b"=")] + b"\n",  # truncated signature (padding cut)
        lambda m: m[: m.rindex(b" ") + 1] + base64.b64encode(
            base64.b64decode(m[m.rindex(b" ") + 1 :])[:-4]) + b"\n",  # a shorter signature
        lambda m: m[: m.rindex(b" ") + 1] + base64.b64encode(
            base64.b64decode(m[m.rindex(b" ") + 1 :])[:4]) + b"\n",  # only a key ID
        lambda m: m[: m.index(b"\n\n") + 1],  # signatures removed
        lambda m: m[: m.index(b"\n\n") + 2],  # empty signature block
        lambda m: b"   " + m,
        lambda m: m.replace(b"1234", b"12\x0034"),
        lambda m: m.replace(b"ext", b"\xffxt"),  # not UTF-8
        lambda m: m.replace(b"ext", b"e\x7f\x1bt"),
        lambda m: m.replace(ORIGIN.encode() + b"\n", ORIGIN.encode() + b" \n", 1),
    ],
)
def test_malformed_notes_are_refused(good: bytes, vkey: VerifierKey, mutate: object) -> None:
    bad = mutate(good)  # type: ignore[operator]
    assert bad != good
    with pytest.raises(CheckpointError):
        open_checkpoint(bad, vkey)


@pytest.mark.parametrize("text", [b"a\tb\n", b"a\rb\n", b"a\x00\n", b"\xc3\n", b"\xed\xa0\x80\n"])
def test_validly_signed_but_forbidden_bytes_are_refused(
    text: bytes, signer: Ed25519CheckpointSigner, vkey: VerifierKey
) -> None:
    # Signed by the trusted key (bypassing sign_note's own checks), still not a note.
    b64 = base64.b64encode(vkey.key_id + signer.sign(text)).decode()
    msg = text + f"\n— {ORIGIN} {b64}\n".encode()
    with pytest.raises(CheckpointError, match=r"control|UTF-8"):
        open_note(msg, vkey)


def test_wrong_key_and_wrong_key_id(good: bytes, vkey: VerifierKey,
                                    signer: Ed25519CheckpointSigner) -> None:
    other = Ed25519CheckpointSigner.generate(ORIGIN)  # same name, another key
    with pytest.raises(CheckpointError, match="no signature"):
        open_checkpoint(good, VerifierKey.for_signer(other))
    with pytest.raises(CheckpointError, match="no signature"):
        open_checkpoint(sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), other), vkey)
    # The trusted name and key ID in front of another key's signature: a forgery, refused.
    text = Checkpoint(ORIGIN, 1, ROOT).to_text()
    forged = base64.b64encode(vkey.key_id + other.sign(text)).decode()
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(text + f"\n— {ORIGIN} {forged}\n".encode(), vkey)
    # ...even next to a valid signature of the trusted key.
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(good + f"— {ORIGIN} {forged}\n".encode(), vkey)
    # A wrong key ID under the trusted name is another key: ignored, so nothing verifies.
    raw = base64.b64decode(good.split(b" ")[-1])
    wrong_id = base64.b64encode(bytes([raw[0] ^ 1]) + raw[1:]).decode()
    head = good[: good.index(b"\n\n") + 2]
    with pytest.raises(CheckpointError, match="no signature"):
        open_checkpoint(head + f"— {ORIGIN} {wrong_id}\n".encode(), vkey)
    # The signature of the same key under another origin/name is not the trusted key's.
    renamed = good.replace(f"— {ORIGIN} ".encode(), b"\xe2\x80\x94 broker.example/x ")
    with pytest.raises(CheckpointError, match="no signature"):
        open_checkpoint(renamed, vkey)


def test_unknown_signatures_are_ignored(good: bytes, vkey: VerifierKey) -> None:
    witness = Ed25519CheckpointSigner.generate("witness.example/w1")
    text = good[: good.index(b"\n\n") + 1]
    cosig = sign_note(text, [witness]).split(b"\n\n")[1]
    cp = open_checkpoint(good + cosig, vkey)
    assert cp.size == 1234
    assert open_checkpoint(text + b"\n" + cosig + good.split(b"\n\n")[1], vkey) == cp
    assert open_checkpoint(sign_note(text, [witness, _same(vkey, good)]), vkey) == cp
    with pytest.raises(CheckpointError, match="no signature"):
        open_checkpoint(text + b"\n" + cosig, vkey)


def _same(vkey: VerifierKey, good: bytes) -> CheckpointSigner:
    """A signer that replays the signature already in ``good`` (no private key needed)."""
    sig = base64.b64decode(good.split(b" ")[-1])[4:]

    class Replay:
        name = vkey.name
        public_key = vkey.public_key

        def sign(self, message: bytes) -> bytes:
            return sig

    return Replay()


def test_origin_defaults_to_the_key_name_and_can_be_given(signer: Ed25519CheckpointSigner,
                                                          vkey: VerifierKey) -> None:
    msg = sign_checkpoint(Checkpoint("log.example/other", 1, ROOT), signer)
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(msg, vkey)
    assert open_checkpoint(msg, vkey, origin="log.example/other").size == 1


def test_size_limits(signer: Ed25519CheckpointSigner, vkey: VerifierKey, good: bytes) -> None:
    with pytest.raises(CheckpointError, match="larger"):
        open_checkpoint(good + b"x" * MAX_NOTE_SIZE, vkey)
    with pytest.raises(CheckpointError, match="larger"):
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT, ("x" * MAX_NOTE_SIZE,)), signer)
    line = good.split(b"\n\n")[1]
    assert open_checkpoint(good + line * (MAX_SIGNATURES - 1), vkey).size == 1234
    with pytest.raises(CheckpointError, match="more than"):
        open_checkpoint(good + line * MAX_SIGNATURES, vkey)


@pytest.mark.parametrize(
    "args",
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        ("a\x00", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, 2**64, ROOT, ()),
        (ORIGIN, True, ROOT, ()),
        (ORIGIN, 1, ROOT[:31], ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("a\nb",)),
    ],
)
def test_checkpoint_fields_are_checked(args: tuple[object, ...]) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # uppercase hex
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong ID
        "PeterNeuman+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # other name
        "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # type 0x02
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # truncated
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW ",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW",  # URL alphabet
    ],
)
def test_bad_verifier_keys(vkey: str) -> None:
    with pytest.raises(CheckpointError):
        VerifierKey.parse(vkey)


def test_key_names_and_texts_are_checked() -> None:
    for name in ("", "a b", "a+b", "a\u00a0b", "a\nb"):
        with pytest.raises(CheckpointError):
            Ed25519CheckpointSigner.generate(name)
    signer = Ed25519CheckpointSigner.generate("n")
    for text in (b"no newline", b"\xff\n", b"a\tb\n"):
        with pytest.raises(CheckpointError):
            sign_note(text, [signer])
    with pytest.raises(CheckpointError):
        sign_note(b"text\n", [])
    with pytest.raises(CheckpointError):
        key_id("n", b"\x00" * 31)


# --- Fuzz -------------------------------------------------------------------------------------


def _only_checkpoint_errors(msg: bytes, vkey: VerifierKey) -> Checkpoint | None:
    try:
        return open_checkpoint(msg, vkey)
    except CheckpointError:
        return None


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    vkey = VerifierKey.parse(C2SP_VKEY)
    assert _only_checkpoint_errors(data, vkey) is None
    assert _only_checkpoint_errors(C2SP_NOTE[:40] + data, vkey) is None


note_lines = st.lists(
    st.one_of(
        st.sampled_from(["", "— ", "—", "— a", "— a b", ORIGIN, "0", "01", "1234",
                         base64.b64encode(ROOT).decode(), "=", "+", " "]),
        st.text(max_size=30),
    ),
    max_size=10,
)


@settings(max_examples=300)
@given(note_lines, st.sampled_from(["\n", "\r\n", "\n\n"]))
def test_fuzz_note_shaped_text(lines: list[str], sep: str) -> None:
    vkey = VerifierKey.parse(C2SP_VKEY)
    msg = sep.join(lines).encode("utf-8", errors="surrogatepass")
    assert _only_checkpoint_errors(msg, vkey) is None
    try:
        parse_note(msg)
    except CheckpointError:
        pass
    try:
        Checkpoint.from_text(msg)
    except CheckpointError:
        pass


@settings(max_examples=300)
@given(st.data())
def test_fuzz_mutations_of_a_signed_checkpoint(draw: st.DataObject) -> None:
    signer = neumann_signer()
    vkey = VerifierKey.for_signer(signer)
    good = sign_checkpoint(Checkpoint("PeterNeumann", 99, ROOT, ("e",)), signer)
    pos = draw.draw(st.integers(0, len(good)))
    kind = draw.draw(st.sampled_from(["replace", "insert", "delete", "flip"]))
    byte = draw.draw(st.integers(0, 255))
    if kind == "replace" and pos < len(good):
        bad = good[:pos] + bytes([byte]) + good[pos + 1 :]
    elif kind == "insert":
        bad = good[:pos] + bytes([byte]) + good[pos:]
    elif kind == "delete" and pos < len(good):
        bad = good[:pos] + good[pos + 1 :]
    elif pos < len(good):
        bad = good[:pos] + bytes([good[pos] ^ (1 << (byte % 8))]) + good[pos + 1 :]
    else:
        bad = good + bytes([byte])
    result = _only_checkpoint_errors(bad, vkey)
    assert result is None or bad == good


@settings(max_examples=200)
@given(st.text(max_size=120))
def test_fuzz_verifier_keys(text: str) -> None:
    try:
        VerifierKey.parse(text)
    except CheckpointError:
        pass
    try:
        VerifierKey.parse("PeterNeumann+c74f20a3+" + text)
    except CheckpointError:
        pass
