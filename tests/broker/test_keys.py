"""Identities and the trust file: known answers, permissions, encryption at rest, init, rotate."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import msgpack
import pytest

from broker import crypto
from broker.errors import KeyStoreError
from broker.keys import (
    Identity,
    PublicIdentity,
    TrustStore,
    init_keys,
    key_path,
    load_identity,
    rotate_keys,
)
from tests.broker import (
    CS_BOX_PUBLIC,
    CS_SIGN_PUBLIC,
    PREF_BOX_PUBLIC,
    PREF_SIGN_PUBLIC,
    cs_identity,
    pref_identity,
)

PASS = b"correct horse battery staple"
NODES = ["cs.041009", "pref.04", "national"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_seeded_identities_derive_the_published_public_keys() -> None:
    cs, pref = cs_identity(), pref_identity()
    assert cs.signer.verify_key == CS_SIGN_PUBLIC
    assert pref.signer.verify_key == PREF_SIGN_PUBLIC
    assert cs.box_secret.public_key == CS_BOX_PUBLIC
    assert pref.box_secret.public_key == PREF_BOX_PUBLIC


def test_rfc8032_signature_known_answer() -> None:
    # RFC 8032 §7.1 test 2: the one-byte message 0x72.
    expected = bytes.fromhex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    )
    assert pref_identity().signer.sign(b"\x72") == expected
    assert crypto.verify(PREF_SIGN_PUBLIC, b"\x72", expected)
    assert not crypto.verify(PREF_SIGN_PUBLIC, b"\x73", expected)
    assert not crypto.verify(CS_SIGN_PUBLIC, b"\x72", expected)


def test_blake2b_matches_libsodium_generichash() -> None:
    import nacl.encoding
    import nacl.hash

    data = b"juki" * 100
    assert crypto.blake2b_256(data) == nacl.hash.blake2b(
        data, digest_size=32, encoder=nacl.encoding.RawEncoder
    )


def test_the_two_keys_are_independent() -> None:
    identity = Identity.generate("cs.041009")
    # Not the Ed25519 → Curve25519 conversion: the box key is its own secret.
    import nacl.bindings

    converted = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(identity.signer.verify_key)
    assert identity.box_secret.public_key != converted


def test_repr_shows_no_key_material() -> None:
    identity = cs_identity()
    text = repr(identity)
    assert identity.node_id in text
    assert CS_SIGN_PUBLIC.hex()[:8] not in text and "seed" not in text


def test_init_creates_private_files_0600_in_a_0700_dir(tmp_path: Path) -> None:
    keys_dir, trust_file = tmp_path / "keys", tmp_path / "keys" / "trust.json"
    created = init_keys(keys_dir, trust_file, NODES, passphrase=None)
    assert created == NODES
    assert _mode(keys_dir) == 0o700
    for node_id in NODES:
        assert _mode(key_path(keys_dir, node_id)) == 0o600
        identity = load_identity(keys_dir, node_id, None)
        entry = TrustStore.load(trust_file).get(node_id)
        assert entry is not None and entry.verify_key == identity.signer.verify_key
        assert entry.box_key == identity.box_secret.public_key


def test_init_is_idempotent_without_force(tmp_path: Path) -> None:
    keys_dir, trust_file = tmp_path / "keys", tmp_path / "trust.json"
    init_keys(keys_dir, trust_file, NODES[:2], None)
    before = {n: key_path(keys_dir, n).read_bytes() for n in NODES[:2]}
    trust_before = trust_file.read_text()

    assert init_keys(keys_dir, trust_file, NODES[:2], None) == []
    assert {n: key_path(keys_dir, n).read_bytes() for n in NODES[:2]} == before
    assert trust_file.read_text() == trust_before

    # A new node is added without touching the existing ones.
    assert init_keys(keys_dir, trust_file, NODES, None) == ["national"]
    assert {n: key_path(keys_dir, n).read_bytes() for n in NODES[:2]} == before
    assert TrustStore.load(trust_file).ids == tuple(sorted(NODES))


def test_init_with_force_replaces_identities(tmp_path: Path) -> None:
    keys_dir, trust_file = tmp_path / "keys", tmp_path / "trust.json"
    init_keys(keys_dir, trust_file, NODES, None)
    old = TrustStore.load(trust_file).get("pref.04")
    assert init_keys(keys_dir, trust_file, NODES, None, force=True) == NODES
    new = TrustStore.load(trust_file).get("pref.04")
    assert old is not None and new is not None and old.fingerprint != new.fingerprint


def test_init_restores_a_missing_trust_entry_without_the_passphrase(tmp_path: Path) -> None:
    keys_dir, trust_file = tmp_path / "keys", tmp_path / "trust.json"
    init_keys(keys_dir, trust_file, NODES, PASS)
    expected = TrustStore.load(trust_file).get("national")
    trust_file.unlink()
    assert init_keys(keys_dir, trust_file, NODES, None) == []
    assert TrustStore.load(trust_file).get("national") == expected


def test_passphrase_encrypts_at_rest(tmp_path: Path) -> None:
    keys_dir, trust_file = tmp_path / "keys", tmp_path / "trust.json"
    init_keys(keys_dir, trust_file, ["pref.04"], PASS)
    identity = load_identity(keys_dir, "pref.04", PASS)
    raw = key_path(keys_dir, "pref.04").read_bytes()
    assert identity.signer.seed not in raw
    assert identity.box_secret.secret not in raw
    doc = msgpack.unpackb(raw)
    assert doc["protection"] == "argon2id-secretbox"
    assert "secrets" not in doc

    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_identity(keys_dir, "pref.04", b"incorrect horse")
    with pytest.raises(KeyStoreError, match="passphrase is required"):
        load_identity(keys_dir, "pref.04", None)


def test_unencrypted_file_does_hold_the_keys_so_the_above_check_means_something(
    tmp_path: Path,
) -> None:
    init_keys(tmp_path / "k", tmp_path / "t.json", ["pref.04"], None)
    identity = load_identity(tmp_path / "k", "pref.04", None)
    assert identity.signer.seed in key_path(tmp_path / "k", "pref.04").read_bytes()
    with pytest.raises(KeyStoreError, match="not encrypted"):
        load_identity(tmp_path / "k", "pref.04", PASS)


def test_swapped_key_file_is_refused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    init_keys(keys_dir, tmp_path / "t.json", ["pref.04", "pref.13"], PASS)
    key_path(keys_dir, "pref.13").write_bytes(key_path(keys_dir, "pref.04").read_bytes())
    with pytest.raises(KeyStoreError):
        load_identity(keys_dir, "pref.13", PASS)


def test_loose_permissions_are_refused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    init_keys(keys_dir, tmp_path / "t.json", ["pref.04"], None)
    path = key_path(keys_dir, "pref.04")
    os.chmod(path, 0o644)
    with pytest.raises(KeyStoreError, match="loose permissions 0644"):
        load_identity(keys_dir, "pref.04", None)
    os.chmod(path, 0o600)
    assert load_identity(keys_dir, "pref.04", None).node_id == "pref.04"


def test_missing_and_corrupt_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match=r"no key file for 'pref\.04'"):
        load_identity(tmp_path, "pref.04", None)
    path = tmp_path / "pref.04.key"
    path.write_bytes(b"\xc1 not msgpack")
    os.chmod(path, 0o600)
    with pytest.raises(KeyStoreError, match="corrupt"):
        load_identity(tmp_path, "pref.04", None)
    with pytest.raises(KeyStoreError, match=r"trust file .* not found"):
        TrustStore.load(tmp_path / "missing.json")


def test_node_ids_cannot_escape_the_keys_dir(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="invalid node id"):
        init_keys(tmp_path, tmp_path / "t.json", ["../evil"], None)
    with pytest.raises(KeyStoreError):
        load_identity(tmp_path, "/etc/passwd", None)


def test_empty_passphrase_is_refused_rather_than_silently_weak(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="non-empty"):
        init_keys(tmp_path, tmp_path / "t.json", ["pref.04"], b"")


def test_rotate_changes_the_trust_entry_and_old_signatures_stop_verifying(tmp_path: Path) -> None:
    keys_dir, trust_file = tmp_path / "keys", tmp_path / "trust.json"
    init_keys(keys_dir, trust_file, NODES, PASS)
    old = load_identity(keys_dir, "pref.04", PASS)
    signature = old.signer.sign(b"a message")
    untouched = TrustStore.load(trust_file).get("national")

    new_public = rotate_keys(keys_dir, trust_file, "pref.04", PASS)

    trust = TrustStore.load(trust_file)
    entry = trust.get("pref.04")
    assert entry == new_public
    assert entry.verify_key != old.signer.verify_key
    assert entry.box_key != old.box_secret.public_key
    assert not crypto.verify(entry.verify_key, b"a message", signature)
    assert load_identity(keys_dir, "pref.04", PASS).public.fingerprint == entry.fingerprint
    assert trust.get("national") == untouched


def test_rotate_unknown_node_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no identity"):
        rotate_keys(tmp_path / "keys", tmp_path / "trust.json", "pref.99", None)


def test_trust_file_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    trust = TrustStore([cs_identity().public, pref_identity().public])
    path = tmp_path / "trust.json"
    trust.save(path)
    loaded = TrustStore.load(path)
    assert loaded.ids == ("cs.041009", "pref.04")
    assert loaded.get("pref.04") == pref_identity().public

    data = json.loads(path.read_text())
    data["pref.04"]["box_key"] = data["cs.041009"]["box_key"]
    path.write_text(json.dumps(data))
    with pytest.raises(KeyStoreError, match=r"fingerprint of 'pref\.04' does not match"):
        TrustStore.load(path)


def test_fingerprint_depends_on_both_keys() -> None:
    a = PublicIdentity.of("n", CS_SIGN_PUBLIC, CS_BOX_PUBLIC)
    b = PublicIdentity.of("n", CS_SIGN_PUBLIC, PREF_BOX_PUBLIC)
    c = PublicIdentity.of("n", PREF_SIGN_PUBLIC, CS_BOX_PUBLIC)
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    assert len(a.fingerprint) == 39  # 8 groups of 4 hex digits
