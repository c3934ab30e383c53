"""鍵と信頼表 (identities and the trust file): who we are, and whom we believe.

Each node and terminal has two independent keys: an Ed25519 signing key and a Curve25519 box key.
They are not derived from each other (key separation; the box key could be rotated alone).

Private keys live in ``<keys_dir>/<node_id>.key``: a msgpack map, mode 0600, in a 0700 directory.
The public halves are kept in the clear in the same file, so `init_keys` can rebuild a lost trust
entry without the passphrase; `load_identity` checks that they match the private keys.

With a passphrase the private part is encrypted at rest: argon2id (opslimit 3, memlimit 64 MiB)
derives a SecretBox key. Why these limits: libsodium's "moderate" preset (256 MiB) takes ~0.5 s
and a quarter GiB per start on our 2-core appliance where a dozen nodes start together; 3 passes
over 64 MiB take ~0.08 s there, still far beyond what a GPU attacker can sweep cheaply for a
decent passphrase. The parameters are stored in each file, so they can be raised later without
breaking existing keys.

The trust file (JSON) maps node id → {verify_key, box_key (base64), fingerprint, created}.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from broker import crypto
from broker.errors import KeyStoreError

KEY_FILE_VERSION = 1
ARGON2_OPSLIMIT = 3
ARGON2_MEMLIMIT = 64 * 1024 * 1024
_PROTECTION_NONE = "none"
_PROTECTION_ARGON2 = "argon2id-secretbox"
_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_MAX_KEY_FILE = 64 * 1024


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_node_id(node_id: str) -> str:
    """`node_id` if it is safe as a file name and a routing key, else KeyStoreError."""
    if not isinstance(node_id, str) or not _NODE_ID_RE.fullmatch(node_id):
        raise KeyStoreError(f"invalid node id {node_id!r} (letters, digits, '_', '.', '-')")
    return node_id


def fingerprint(verify_key: bytes, box_key: bytes) -> str:
    """A short, human-comparable digest of both public keys (read aloud when pinning a node)."""
    digest = crypto.blake2b_256(b"juki-fp-v1" + verify_key + box_key).hex()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """What everyone may know about a node: its id and public keys."""

    node_id: str
    verify_key: bytes
    box_key: bytes
    fingerprint: str
    created: str = ""

    @classmethod
    def of(
        cls, node_id: str, verify_key: bytes, box_key: bytes, created: str = ""
    ) -> PublicIdentity:
        return cls(node_id, verify_key, box_key, fingerprint(verify_key, box_key), created)


@dataclass(frozen=True, slots=True)
class Identity:
    """A node's own private keys. `repr` never shows key material."""

    node_id: str
    signer: crypto.Signer = field(repr=False)
    box_secret: crypto.BoxSecret = field(repr=False)
    created: str = ""

    @classmethod
    def generate(cls, node_id: str) -> Identity:
        return cls(
            check_node_id(node_id),
            crypto.Signer.generate(),
            crypto.BoxSecret.generate(),
            _now_iso(),
        )

    @classmethod
    def from_seeds(
        cls, node_id: str, signing_seed: bytes, box_secret: bytes, created: str = ""
    ) -> Identity:
        """Rebuild an identity from its two 32-byte secrets (key files, fixed test keys)."""
        return cls(node_id, crypto.Signer(signing_seed), crypto.BoxSecret(box_secret), created)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity.of(
            self.node_id, self.signer.verify_key, self.box_secret.public_key, self.created
        )


class TrustStore:
    """The public identities this node believes, keyed by node id."""

    def __init__(self, entries: Iterable[PublicIdentity] = ()) -> None:
        self._entries: dict[str, PublicIdentity] = {e.node_id: e for e in entries}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustStore:
        p = Path(path)
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeyStoreError(f"trust file {p} not found; run `juki keys init`") from None
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"trust file {p} unreadable: {exc}") from None
        if not isinstance(raw, dict):
            raise KeyStoreError(f"trust file {p}: expected a JSON object of node ids")
        entries = []
        for node_id, entry in raw.items():
            try:
                check_node_id(node_id)
                verify_key = _b64_key(entry["verify_key"])
                box_key = _b64_key(entry["box_key"])
                created = str(entry.get("created", ""))
                stored_fp = entry["fingerprint"]
            except (KeyError, TypeError, ValueError, KeyStoreError) as exc:
                raise KeyStoreError(f"trust file {p}: bad entry for {node_id!r}: {exc}") from None
            pub = PublicIdentity.of(node_id, verify_key, box_key, created)
            if pub.fingerprint != stored_fp:
                raise KeyStoreError(
                    f"trust file {p}: fingerprint of {node_id!r} does not match its keys"
                )
            entries.append(pub)
        return cls(entries)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (a reader never sees half a file)."""
        data = {
            node_id: {
                "verify_key": base64.b64encode(e.verify_key).decode("ascii"),
                "box_key": base64.b64encode(e.box_key).decode("ascii"),
                "fingerprint": e.fingerprint,
                "created": e.created,
            }
            for node_id, e in sorted(self._entries.items())
        }
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        _atomic_write(Path(path), text.encode("utf-8"), 0o644)

    def get(self, node_id: str) -> PublicIdentity | None:
        return self._entries.get(node_id)

    def add(self, entry: PublicIdentity) -> None:
        """Insert or replace the entry for `entry.node_id`."""
        self._entries[entry.node_id] = entry

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[PublicIdentity]:
        return iter(self._entries.values())


def _b64_key(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("key must be a base64 string")
    key = base64.b64decode(text, validate=True)
    if len(key) != crypto.KEY_SIZE:
        raise ValueError(f"key must decode to {crypto.KEY_SIZE} bytes")
    return key


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- key files -----------------------------------------------------------------------------------


def key_path(keys_dir: str | os.PathLike[str], node_id: str) -> Path:
    return Path(keys_dir) / f"{check_node_id(node_id)}.key"


def _encode_key_file(identity: Identity, passphrase: bytes | None) -> bytes:
    secrets = {
        "node_id": identity.node_id,
        "sign_seed": identity.signer.seed,
        "box_secret": identity.box_secret.secret,
    }
    doc: dict[str, Any] = {
        "v": KEY_FILE_VERSION,
        "node_id": identity.node_id,
        "created": identity.created,
        "verify_key": identity.signer.verify_key,
        "box_key": identity.box_secret.public_key,
    }
    if passphrase is None:
        doc["protection"] = _PROTECTION_NONE
        doc["secrets"] = secrets
    else:
        salt = crypto.random_bytes(crypto.SALT_SIZE)
        key = crypto.derive_key(passphrase, salt, ARGON2_OPSLIMIT, ARGON2_MEMLIMIT)
        doc["protection"] = _PROTECTION_ARGON2
        doc["salt"] = salt
        doc["opslimit"] = ARGON2_OPSLIMIT
        doc["memlimit"] = ARGON2_MEMLIMIT
        doc["sealed"] = crypto.secretbox_seal(key, msgpack.packb(secrets))
    packed: bytes = msgpack.packb(doc)
    return packed


def _read_key_doc(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"no key file at {path}; run `juki keys init`") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read key file {path}: {exc}") from None
    try:
        if len(data) > _MAX_KEY_FILE:
            raise ValueError("file too large")
        doc = msgpack.unpackb(data, raw=False)
        if not isinstance(doc, dict) or doc.get("v") != KEY_FILE_VERSION:
            raise ValueError(f"unsupported key file version {doc.get('v')!r}")
    except Exception as exc:  # msgpack raises several unrelated types for corrupt input
        raise KeyStoreError(f"key file {path} is corrupt: {exc}") from None
    return doc


def _write_identity(keys_dir: Path, identity: Identity, passphrase: bytes | None) -> None:
    _atomic_write(
        key_path(keys_dir, identity.node_id), _encode_key_file(identity, passphrase), 0o600
    )


def _public_from_doc(path: Path, node_id: str, doc: dict[str, Any]) -> PublicIdentity:
    try:
        vk, bk = doc["verify_key"], doc["box_key"]
        if doc["node_id"] != node_id or not isinstance(vk, bytes) or not isinstance(bk, bytes):
            raise ValueError("node id or public keys do not match")
        return PublicIdentity.of(node_id, vk, bk, str(doc.get("created", "")))
    except (KeyError, ValueError) as exc:
        raise KeyStoreError(f"key file {path} is corrupt: {exc}") from None


def _check_passphrase(passphrase: bytes | None) -> None:
    if passphrase is not None and (not isinstance(passphrase, bytes) or not passphrase):
        raise KeyStoreError("passphrase must be non-empty bytes (or None for no encryption)")


def _prepare_dir(keys_dir: Path) -> None:
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)


def _load_trust_or_empty(trust_file: Path) -> TrustStore:
    return TrustStore.load(trust_file) if trust_file.exists() else TrustStore()


def init_keys(
    keys_dir: str | os.PathLike[str],
    trust_file: str | os.PathLike[str],
    node_ids: Iterable[str],
    passphrase: bytes | None,
    force: bool = False,
) -> list[str]:
    """Create the identities that do not exist yet and enter them in the trust file.

    Existing key files are kept unless `force`; a trust entry missing for an existing key file is
    restored from the file's public part. Returns the node ids whose keys were (re)created.
    """
    _check_passphrase(passphrase)
    kdir, tpath = Path(keys_dir), Path(trust_file)
    ids = [check_node_id(n) for n in node_ids]
    _prepare_dir(kdir)
    trust = _load_trust_or_empty(tpath)
    created: list[str] = []
    changed = False
    for node_id in ids:
        path = key_path(kdir, node_id)
        if path.exists() and not force:
            if node_id not in trust:
                trust.add(_public_from_doc(path, node_id, _read_key_doc(path)))
                changed = True
            continue
        identity = Identity.generate(node_id)
        _write_identity(kdir, identity, passphrase)
        trust.add(identity.public)
        created.append(node_id)
        changed = True
    if changed or not tpath.exists():
        tpath.parent.mkdir(parents=True, exist_ok=True)
        trust.save(tpath)
    return created


def rotate_keys(
    keys_dir: str | os.PathLike[str],
    trust_file: str | os.PathLike[str],
    node_id: str,
    passphrase: bytes | None,
) -> PublicIdentity:
    """Replace `node_id`'s identity with fresh keys and rewrite its trust entry.

    Every other node must receive the new trust file before it accepts the node's messages again;
    messages signed with the old key are refused as badly signed from then on.
    """
    _check_passphrase(passphrase)
    kdir, tpath = Path(keys_dir), Path(trust_file)
    path = key_path(kdir, node_id)
    trust = _load_trust_or_empty(tpath)
    if not path.exists() and node_id not in trust:
        raise KeyStoreError(f"no identity {node_id!r} to rotate; run `juki keys init` first")
    _prepare_dir(kdir)
    identity = Identity.generate(node_id)
    _write_identity(kdir, identity, passphrase)
    trust.add(identity.public)
    trust.save(tpath)
    return identity.public


def load_identity(
    keys_dir: str | os.PathLike[str], node_id: str, passphrase: bytes | None
) -> Identity:
    """Read and (if encrypted) unlock `node_id`'s private keys.

    Raises:
        KeyStoreError: missing file, permissions looser than 0600, corrupt file, a passphrase
            missing / wrong / given for an unencrypted file.
    """
    path = key_path(keys_dir, node_id)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise KeyStoreError(
            f"no key file for {node_id!r} at {path}; run `juki keys init`"
        ) from None
    if mode & 0o077:
        raise KeyStoreError(
            f"key file {path} has loose permissions {mode:04o}; run `chmod 600 {path}`"
        )
    doc = _read_key_doc(path)
    public = _public_from_doc(path, node_id, doc)
    protection = doc.get("protection")
    secrets: Any
    if protection == _PROTECTION_NONE:
        if passphrase is not None:
            raise KeyStoreError(f"key file {path} is not encrypted but a passphrase was given")
        secrets = doc.get("secrets")
    elif protection == _PROTECTION_ARGON2:
        if passphrase is None:
            raise KeyStoreError(f"key file {path} is encrypted; a passphrase is required")
        _check_passphrase(passphrase)
        try:
            key = crypto.derive_key(passphrase, doc["salt"], doc["opslimit"], doc["memlimit"])
            sealed = doc["sealed"]
        except (KeyError, TypeError) as exc:
            raise KeyStoreError(f"key file {path} is corrupt: {exc}") from None
        plain = crypto.secretbox_open(key, sealed) if isinstance(sealed, bytes) else None
        if plain is None:
            raise KeyStoreError(f"wrong passphrase for {node_id!r} (or {path} was altered)")
        secrets = msgpack.unpackb(plain, raw=False)
    else:
        raise KeyStoreError(f"key file {path}: unknown protection {protection!r}")
    try:
        if secrets["node_id"] != node_id:
            raise ValueError("file belongs to another node")
        identity = Identity.from_seeds(
            node_id, secrets["sign_seed"], secrets["box_secret"], public.created
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"key file {path} is corrupt: {exc}") from None
    if identity.public.fingerprint != public.fingerprint:
        raise KeyStoreError(f"key file {path}: private and public keys do not match")
    return identity
