"""The one path every broker secret takes: exclusive create, checked read, no regeneration."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthid_broker.crypto.key_provider import (
    KEK_FILE_NAME,
    KeyProviderError,
    LocalFileKeyProvider,
    SecretMissingError,
    create_secret_file,
    encode_kek,
    read_secret_file,
)
from healthid_broker.login.sealing_keys import ENV_VAR as SEALING_ENV_VAR
from healthid_broker.login.sealing_keys import FILE_NAME as SEALING_FILE_NAME
from healthid_broker.runtime.secrets import (
    PAIRWISE_ENV_VAR,
    PAIRWISE_FILE_NAME,
    SECRET_FILES,
    SecretsMissingError,
    init_secrets,
    is_shared_shape,
    load_secrets,
    missing_secrets,
)

CLI = [sys.executable, "-m", "healthid_broker.cli"]
GOOD_KEY = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}


def _snapshot(d: Path) -> dict[str, bytes]:
    return {name: (d / name).read_bytes() for name in SECRET_FILES}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    assert sorted(init_secrets(d)) == sorted(SECRET_FILES)
    return d


def test_init_creates_every_secret_once_owner_only(data: Path) -> None:
    before = _snapshot(data)
    for name in SECRET_FILES:
        st = os.stat(data / name)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    assert init_secrets(data) == []  # a second run makes nothing
    assert _snapshot(data) == before  # and changes nothing
    assert not [p.name for p in data.iterdir() if p.name.endswith(".tmp")]
    a, b = load_secrets(data), load_secrets(data, create=True)
    assert a.kek.kek_id == b.kek.kek_id and a.pairwise_root == b.pairwise_root
    assert b.sealer.open("p", "k", a.sealer.seal("p", "k", b"x")) == b"x"
    assert _snapshot(data) == before
    assert a.pairwise_root.hex() not in repr(a)


def test_missing_secrets_are_named_and_not_created(tmp_path: Path) -> None:
    with pytest.raises(SecretsMissingError, match="healthid-broker init --data-dir") as err:
        load_secrets(tmp_path)
    assert err.value.missing == list(SECRET_FILES)
    assert missing_secrets(tmp_path) == list(SECRET_FILES)
    assert list(tmp_path.iterdir()) == []
    init_secrets(tmp_path)
    (tmp_path / PAIRWISE_FILE_NAME).unlink()
    with pytest.raises(SecretsMissingError) as err:
        load_secrets(tmp_path)
    assert err.value.missing == [PAIRWISE_FILE_NAME]


@pytest.mark.parametrize("name", SECRET_FILES)
@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"\n", "is empty"),
    (b"c2hvcnQ\n", "exactly 32 bytes|not a sealing-key document"),
    (os.urandom(16), "32 bytes|not base64url|not a sealing-key document"),
])
def test_short_or_empty_secret_is_a_hard_failure_never_regenerated(
        data: Path, name: str, content: bytes, message: str) -> None:
    # The defect this replaces: a short pairwise.key was silently replaced by a new root,
    # which changes every person's `sub` at every application.
    (data / name).write_bytes(content)
    with pytest.raises(KeyProviderError, match=message):
        load_secrets(data)
    with pytest.raises(KeyProviderError, match=message):
        load_secrets(data, create=True)  # the embedded shape's first-start path
    with pytest.raises(KeyProviderError, match=message):
        init_secrets(data)
    assert (data / name).read_bytes() == content


@pytest.mark.parametrize("name", SECRET_FILES)
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o700])
def test_accessible_by_group_or_others_is_refused(data: Path, name: str, mode: int) -> None:
    before = (data / name).read_bytes()
    (data / name).chmod(mode)
    if mode & 0o077:
        with pytest.raises(KeyProviderError, match="chmod 600"):
            load_secrets(data)
        with pytest.raises(KeyProviderError, match="group/others"):
            init_secrets(data)
    else:
        load_secrets(data)  # owner-only modes (0600, 0700, 0400) are fine
    assert (data / name).read_bytes() == before


@pytest.fixture
def foreign_owner(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The uid of "another user": as root the file is really given away (os.chown); otherwise
    the process pretends to run as another uid."""
    other = 54321 if os.geteuid() == 0 else os.geteuid() + 1
    if os.geteuid() != 0:
        monkeypatch.setattr(os, "geteuid", lambda: other)
    yield other


@pytest.mark.parametrize("name", SECRET_FILES)
def test_file_of_another_user_is_refused(data: Path, name: str, foreign_owner: int) -> None:
    if os.geteuid() == 0:
        os.chown(data / name, foreign_owner, -1)
    with pytest.raises(KeyProviderError, match="owned by uid"):
        load_secrets(data)


def test_symlink_is_followed_and_the_target_checked(data: Path, tmp_path: Path) -> None:
    # A mounted secret is often a symlink; the file it leads to must pass the checks.
    mount = tmp_path / "mount"
    mount.mkdir()
    real = mount / "pairwise"
    os.replace(data / PAIRWISE_FILE_NAME, real)
    (data / PAIRWISE_FILE_NAME).symlink_to(real)
    assert load_secrets(data).pairwise_root
    real.chmod(0o644)
    with pytest.raises(KeyProviderError, match="accessible by group/others"):
        load_secrets(data)
    (data / KEK_FILE_NAME).unlink()
    (data / KEK_FILE_NAME).mkdir(mode=0o700)
    with pytest.raises(KeyProviderError, match="not a regular file"):
        read_secret_file(data / KEK_FILE_NAME)
    os.mkfifo(data / "fifo", 0o600)  # must not hang waiting for a writer
    with pytest.raises(KeyProviderError, match="not a regular file"):
        read_secret_file(data / "fifo")


def test_pairwise_root_of_earlier_versions_stays_valid(data: Path) -> None:
    # Earlier versions wrote the 32 raw bytes; the same root (and so every `sub`) is kept.
    raw = os.urandom(32)
    (data / PAIRWISE_FILE_NAME).write_bytes(raw)
    assert load_secrets(data).pairwise_root == raw
    (data / PAIRWISE_FILE_NAME).write_bytes(raw + b"x")  # not a root of any version
    with pytest.raises(KeyProviderError):
        load_secrets(data)


def test_env_provider_covers_the_same_set(data: Path) -> None:
    from_files = load_secrets(data)
    env = {
        "HEALTHID_BROKER_KEK": (data / KEK_FILE_NAME).read_text(),
        PAIRWISE_ENV_VAR: (data / PAIRWISE_FILE_NAME).read_text(),
        SEALING_ENV_VAR: (data / SEALING_FILE_NAME).read_text(),
    }
    from_env = load_secrets("/nonexistent", provider="env", environ=env)
    assert from_env.kek.kek_id == from_files.kek.kek_id
    assert from_env.pairwise_root == from_files.pairwise_root
    sealed = from_files.sealer.seal("login.code", "c", b"v")
    assert from_env.sealer.open("login.code", "c", sealed) == b"v"
    other = load_secrets("/nonexistent", provider="env:MY_KEK",
                         environ={**env, "MY_KEK": encode_kek(os.urandom(32))})
    assert other.kek.kek_id != from_files.kek.kek_id
    with pytest.raises(KeyProviderError, match=PAIRWISE_ENV_VAR):
        load_secrets("/nonexistent", provider="env", environ={
            k: v for k, v in env.items() if k != PAIRWISE_ENV_VAR})
    with pytest.raises(KeyProviderError, match=SEALING_ENV_VAR):
        load_secrets("/nonexistent", provider="env", environ={**env, SEALING_ENV_VAR: "{"})
    with pytest.raises(KeyProviderError, match="unknown key provider"):
        load_secrets(data, provider="vault")


def _race_create(path: str, barrier: multiprocessing.synchronize.Barrier, i: int,
                 out: multiprocessing.queues.Queue[tuple[int, bool, str]]) -> None:
    content = hashlib.sha256(str(i).encode()).hexdigest().encode() * 128  # 8 KiB
    barrier.wait()
    created = create_secret_file(path, content)
    seen = read_secret_file(path)
    out.put((i, created, hashlib.sha256(seen).hexdigest()
             if seen == content or not created else "own content lost"))


@pytest.mark.slow
def test_exclusive_create_one_winner_and_no_partial_file(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier = ctx.Barrier(n)
    out: multiprocessing.queues.Queue[tuple[int, bool, str]] = ctx.Queue()
    path = tmp_path / "d" / "secret"
    procs = [ctx.Process(target=_race_create, args=(str(path), barrier, i, out))
             for i in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    winners = [i for i, created, _ in results if created]
    assert len(winners) == 1
    expected = hashlib.sha256(
        hashlib.sha256(str(winners[0]).encode()).hexdigest().encode() * 128).hexdigest()
    assert {digest for _, _, digest in results} == {expected}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret"]


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "kek.key"
    path.write_bytes(b"whatever was there\n")
    path.chmod(0o600)
    assert create_secret_file(path, b"new") is False
    assert path.read_bytes() == b"whatever was there\n"
    with pytest.raises(KeyProviderError, match="not base64url"):
        LocalFileKeyProvider(path)
    with pytest.raises(SecretMissingError):
        LocalFileKeyProvider(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize(("database_url", "redis_url", "shared"), [
    (None, None, False),
    ("sqlite:////tmp/x.db", None, False),
    (None, "redis://127.0.0.1:6379/0", True),
    ("sqlite:////tmp/x.db", "rediss://r.example:6380/0", True),
    ("postgresql+psycopg://u@h/db", None, True),
])
def test_shared_shape(database_url: str | None, redis_url: str | None, shared: bool) -> None:
    assert is_shared_shape(database_url, redis_url) is shared


def _serve(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    jwks = tmp_path / "master.jwks"
    jwks.write_text(json.dumps({"keys": [GOOD_KEY]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHID_")}
    return subprocess.run(
        [*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--port", "0",
         "--public-base", "https://broker.example", "--federation", "tu",
         "--master-jwks", str(jwks), *extra],
        capture_output=True, text=True, timeout=60, check=False, env=env)


@pytest.mark.parametrize("shape", [
    ["--redis-url", "redis://127.0.0.1:1/0"],
    ["--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/nothing"],
])
@pytest.mark.slow
def test_shared_serve_refuses_to_start_without_secrets(tmp_path: Path, shape: list[str]) -> None:
    # Refused before the database or Redis is touched (the URLs lead nowhere).
    r = _serve(tmp_path, *shape)
    assert r.returncode == 2, r.stderr
    assert "healthid-broker init --data-dir" in r.stderr
    assert "kek.key" in r.stderr and "pairwise.key" in r.stderr
    assert "Traceback" not in r.stderr
    assert not [p for p in (tmp_path / "data").glob("*") if p.name in SECRET_FILES]


@pytest.mark.slow
def test_shared_serve_refuses_a_damaged_secret(tmp_path: Path) -> None:
    init_secrets(tmp_path / "data")
    (tmp_path / "data" / PAIRWISE_FILE_NAME).write_bytes(b"")
    r = _serve(tmp_path, "--redis-url", "redis://127.0.0.1:1/0")
    assert r.returncode == 2 and "is empty" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "data" / PAIRWISE_FILE_NAME).read_bytes() == b""


@pytest.mark.slow
def test_init_cli_says_what_it_did(tmp_path: Path) -> None:
    d = tmp_path / "data"
    first = subprocess.run([*CLI, "init", "--data-dir", str(d)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert "created kek.key, pairwise.key, sealing-keys.json" in first.stdout
    before = _snapshot(d)
    again = subprocess.run([*CLI, "init", "--data-dir", str(d), "--json"], capture_output=True,
                           text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"data_dir": str(d), "created": [],
                                        "unchanged": list(SECRET_FILES),
                                        "database_migrated": False}
    assert _snapshot(d) == before
    (d / SEALING_FILE_NAME).chmod(0o644)
    bad = subprocess.run([*CLI, "init", "--data-dir", str(d)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert bad.returncode == 1 and "chmod 600" in bad.stderr and "Traceback" not in bad.stderr


def _first_start(d: str, barrier: multiprocessing.synchronize.Barrier,
                 out: multiprocessing.queues.Queue[tuple[str, str, bytes]]) -> None:
    barrier.wait()
    s = load_secrets(d, create=True)  # the embedded shape's first start
    out.put((s.kek.kek_id, s.pairwise_root.hex(), s.sealer.seal("p", "k", b"v")))


@pytest.mark.slow
def test_embedded_first_starts_at_once_share_one_set(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier = ctx.Barrier(n)
    out: multiprocessing.queues.Queue[tuple[str, str, bytes]] = ctx.Queue()
    d = tmp_path / "data"
    procs = [ctx.Process(target=_first_start, args=(str(d), barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert len({(kek_id, root) for kek_id, root, _ in results}) == 1
    final = load_secrets(d)
    assert final.kek.kek_id == results[0][0] and final.pairwise_root.hex() == results[0][1]
    for _, _, sealed in results:  # what every process sealed opens with the one set on disk
        assert final.sealer.open("p", "k", sealed) == b"v"
