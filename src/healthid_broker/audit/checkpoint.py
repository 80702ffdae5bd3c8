"""Signed checkpoints of the audit log: C2SP ``tlog-checkpoint`` carried in a C2SP
``signed-note`` with Ed25519 signatures (c2sp.org/tlog-checkpoint, c2sp.org/signed-note).

A checkpoint's note text::

    <origin>\\n
    <tree size, decimal, no leading zeroes>\\n
    <base64 root hash>\\n
    [<extension line>\\n ...]

followed by a blank line and signature lines ``— <key name> <base64(key ID || signature)>``.
The key ID is ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]`` and a verifier
key is written ``<name>+<hex key ID>+<base64(0x01 || public key)>``.

Parsing is strict and every bad input raises ``CheckpointError`` — nothing else. Per the
signed-note spec, signatures by keys other than the trusted one (witness cosignatures, a
rotated key) are checked for syntax and otherwise ignored; a note is accepted only when it
carries a valid signature of the trusted key, and rejected when any signature claiming to be
by that key fails.

Signing goes through the ``CheckpointSigner`` protocol, so the key may live in a file, a
secret mount or an HSM; ``Ed25519CheckpointSigner`` holds one in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Checkpoint",
    "CheckpointError",
    "CheckpointSigner",
    "Ed25519CheckpointSigner",
    "NoteSignature",
    "VerifierKey",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_note",
    "sign_checkpoint",
    "sign_note",
]

#: Signature type identifier of Ed25519 (signed-note "Signature types").
ED25519 = 0x01
ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
HASH_SIZE = 32
#: A note larger than this is refused before it is parsed. The spec asks verifiers to accept
#: at least 16 signatures of up to ~5 kB (post-quantum); 128 KiB leaves room for that.
MAX_NOTE_SIZE = 128 * 1024
#: The most signature lines a note may carry (the Go note package stops at 100 as well).
MAX_SIGNATURES = 100
#: Tree sizes are uint64 in every tlog implementation.
MAX_TREE_SIZE = 2**64 - 1

_SIG_PREFIX = "— "  # em dash U+2014, space
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)", re.ASCII)
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}", re.ASCII)


class CheckpointError(ValueError):
    """A malformed, unsigned, wrongly signed or otherwise unacceptable note or checkpoint."""


@runtime_checkable
class CheckpointSigner(Protocol):
    """What signs a checkpoint: an Ed25519 key under a name (the log's origin, by convention).

    ``sign`` returns the 64-byte RFC 8032 signature of the message; ``public_key`` is the
    32-byte RFC 8032 encoding. A key provider or an HSM implements this."""

    @property
    def name(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class Ed25519CheckpointSigner:
    """A ``CheckpointSigner`` holding its Ed25519 private key in memory."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_key_name(name)
        self._name = name
        self._key = private_key
        self._public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls, name: str) -> Ed25519CheckpointSigner:
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def _check_key_name(name: str) -> None:
    # signed-note "Format": non-empty, no Unicode spaces, no plus; the note's rules (UTF-8, no
    # control characters) apply to it as part of the note.
    if (
        not isinstance(name, str)
        or not name
        or "+" in name
        or any(c.isspace() or ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in name)
    ):
        raise CheckpointError("a key name is non-empty, without spaces, plus signs or controls")


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(key name || 0x0A || 0x01 || public key)[:4] — the Ed25519 key ID."""
    _check_key_name(name)
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise CheckpointError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64 (RFC 4648 §4): padded, no whitespace, canonical."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise CheckpointError(f"{what} is not base64") from e
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


@dataclass(frozen=True)
class VerifierKey:
    """A trusted Ed25519 note key: ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        key_id(self.name, self.public_key)  # validates name and key length
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as e:
            raise CheckpointError("not an Ed25519 public key") from e

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @classmethod
    def for_signer(cls, signer: CheckpointSigner) -> VerifierKey:
        return cls(signer.name, bytes(signer.public_key))

    @classmethod
    def parse(cls, vkey: str) -> VerifierKey:
        if not isinstance(vkey, str) or len(vkey) > 1024:
            raise CheckpointError("not a verifier key")
        parts = vkey.split("+", 2)  # the base64 part may contain "+"
        if len(parts) != 3:
            raise CheckpointError("a verifier key is <name>+<hex key ID>+<base64 key>")
        name, hex_id, b64 = parts
        _check_key_name(name)
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise CheckpointError("the key ID of a verifier key is 8 lowercase hex digits")
        raw = _b64decode(b64, "the verifier key")
        if len(raw) != 1 + ED25519_PUBLIC_KEY_SIZE or raw[0] != ED25519:
            raise CheckpointError("the verifier key is not an Ed25519 key (type 0x01)")
        key = cls(name, raw[1:])
        if key.key_id.hex() != hex_id:
            raise CheckpointError("the verifier key's key ID does not match its key")
        return key

    def __str__(self) -> str:
        b64 = base64.b64encode(bytes([ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{b64}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != ED25519_SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID and the signature bytes after the key ID."""

    name: str
    key_id: bytes
    signature: bytes


def parse_note(msg: bytes) -> tuple[bytes, tuple[NoteSignature, ...]]:
    """Split a signed note into its text (with the final newline) and its signature lines,
    checking the syntax of the signed-note spec; no signature is verified here."""
    if not isinstance(msg, bytes | bytearray):
        raise CheckpointError("a note is bytes")
    if len(msg) > MAX_NOTE_SIZE:
        raise CheckpointError(f"the note is larger than {MAX_NOTE_SIZE} bytes")
    try:
        decoded = bytes(msg).decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise CheckpointError("the note is not UTF-8") from e
    if any(ord(c) < 0x20 and c != "\n" for c in decoded):
        raise CheckpointError("the note contains a control character")
    # The text is separated from the signatures by the last empty line.
    split = decoded.rfind("\n\n")
    if split < 0:
        raise CheckpointError("the note has no signature block")
    text, sigs = decoded[: split + 1], decoded[split + 2 :]
    if not sigs or not sigs.endswith("\n"):
        raise CheckpointError("the note's signature block is empty or not newline-terminated")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"the note has more than {MAX_SIGNATURES} signatures")
    signatures: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError("a signature line does not start with an em dash and a space")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not b64:
            raise CheckpointError("a signature line is '— <key name> <base64>'")
        _check_key_name(name)
        raw = _b64decode(b64, "a signature")
        if len(raw) < 5:
            raise CheckpointError("a signature is shorter than a key ID and one byte")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return text.encode("utf-8"), tuple(signatures)


def open_note(msg: bytes, verifier: VerifierKey) -> bytes:
    """The text of a signed note that carries a valid signature of ``verifier``.

    Signatures of other keys (another name or key ID) are ignored, as the spec requires; a
    signature line naming the trusted key that fails verification rejects the note."""
    text, signatures = parse_note(msg)
    trusted = verifier.key_id
    verified = False
    for sig in signatures:
        if sig.name != verifier.name or sig.key_id != trusted:
            continue
        if not verifier.verify(text, sig.signature):
            raise CheckpointError(f"the signature of {verifier.name} does not verify")
        verified = True
    if not verified:
        raise CheckpointError(f"the note carries no signature of {verifier.name}")
    return text


def sign_note(text: bytes, signers: Sequence[CheckpointSigner]) -> bytes:
    """A signed note of ``text`` (which ends in a newline) with one line per signer."""
    if not signers:
        raise CheckpointError("a signed note needs at least one signer")
    _check_text(text)
    lines = []
    for signer in signers:
        kid = key_id(signer.name, bytes(signer.public_key))
        signature = bytes(signer.sign(text))
        if len(signature) != ED25519_SIGNATURE_SIZE:
            raise CheckpointError("the signer returned no Ed25519 signature")
        b64 = base64.b64encode(kid + signature).decode("ascii")
        lines.append(f"{_SIG_PREFIX}{signer.name} {b64}\n")
    msg = text + b"\n" + "".join(lines).encode("utf-8")
    if len(msg) > MAX_NOTE_SIZE:
        raise CheckpointError(f"the note would be larger than {MAX_NOTE_SIZE} bytes")
    return msg


def _check_text(text: bytes) -> None:
    try:
        decoded = text.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise CheckpointError("the note text is not UTF-8") from e
    if not decoded.endswith("\n"):
        raise CheckpointError("the note text ends with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in decoded):
        raise CheckpointError("the note text contains a control character")


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size, root hash and optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for line, what in [(self.origin, "the origin"), *((e, "an extension line") for e in
                                                         self.extensions)]:
            if not isinstance(line, str) or not line:
                raise CheckpointError(f"{what} is a non-empty line")
            if any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in line):
                raise CheckpointError(f"{what} contains a control character")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not (
            0 <= self.size <= MAX_TREE_SIZE
        ):
            raise CheckpointError("the tree size is an integer in 0..2^64-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise CheckpointError("the root hash is 32 bytes")

    def to_text(self) -> bytes:
        """The checkpoint's note text (c2sp.org/tlog-checkpoint "Note text")."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root_hash).decode("ascii"),
            *self.extensions,
        ]
        return "".join(f"{line}\n" for line in lines).encode("utf-8")

    @classmethod
    def from_text(cls, text: bytes) -> Checkpoint:
        """Parse a checkpoint's note text strictly."""
        _check_text(text)
        lines = text.decode("utf-8")[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("a checkpoint has an origin, a tree size and a root hash")
        origin, size, root, *extensions = lines
        if not _DECIMAL.fullmatch(size):
            raise CheckpointError("the tree size is not a canonical decimal number")
        if len(size) > 20 or int(size) > MAX_TREE_SIZE:
            raise CheckpointError("the tree size is larger than 2^64-1")
        root_hash = _b64decode(root, "the root hash")
        return cls(origin, int(size), root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: CheckpointSigner) -> bytes:
    """The checkpoint as a signed note, signed by ``signer``."""
    return sign_note(checkpoint.to_text(), [signer])


def open_checkpoint(msg: bytes, verifier: VerifierKey, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint against the trusted key and parse it.

    ``origin`` is the log's expected origin line; by default the verifier key's name (the
    spec's SHOULD: the log's key name matches its origin)."""
    text = open_note(msg, verifier)
    checkpoint = Checkpoint.from_text(text)
    expected = verifier.name if origin is None else origin
    if checkpoint.origin != expected:
        raise CheckpointError("the checkpoint's origin is not the expected log")
    return checkpoint
