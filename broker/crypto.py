"""暗号基盤 (cryptographic primitives): the one seam over PyNaCl/libsodium.

Thin typed wrappers over libsodium's bindings, chosen for the envelope's hot path:

* Ed25519 signatures (`Signer`, `verify`) over raw bytes, no wrapper objects per call.
* crypto_box with the shared key precomputed once per peer (`Box`, crypto_box_beforenm), because
  an RPC seals and opens one box per message and the X25519 step would otherwise dominate.
* SecretBox and argon2id for keys at rest (used by broker/keys.py only).
* The per-message calls (sign, verify, box, unbox) go to libsodium's cffi functions directly
  (`nacl._sodium`, present in every PyNaCl 1.x): the public wrappers copy the message into a
  signed-message buffer and back, and re-check lengths and types on every call, which is a few
  µs per message on the RPC hot path.
* BLAKE2b-256 via hashlib: byte-identical to libsodium's crypto_generichash with a 32-byte
  digest (a known-answer test proves it) and it avoids an FFI round trip.

Expected failures (a bad signature, a box that does not open) are reported as `False` / `None`
rather than exceptions: callers map them to refusal reasons, and no nacl exception type ever
leaves this module. Malformed key material raises `KeyStoreError`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import partial

import nacl.bindings as _sodium
import nacl.exceptions as _nacl_exc
import nacl.pwhash.argon2id as _argon2id
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib

from broker.errors import KeyStoreError

KEY_SIZE = 32
SIGNATURE_SIZE = _sodium.crypto_sign_BYTES  # 64
NONCE_SIZE = _sodium.crypto_box_NONCEBYTES  # 24
MAC_SIZE = 16
BOX_OVERHEAD = NONCE_SIZE + MAC_SIZE
SALT_SIZE = _argon2id.SALTBYTES  # 16


def _check_len(name: str, value: bytes, size: int) -> None:
    if type(value) is not bytes or len(value) != size:
        raise KeyStoreError(f"{name} must be {size} bytes")


def random_bytes(size: int) -> bytes:
    """Fresh bytes from the OS for secrets (keys, salts): never pooled."""
    return os.urandom(size)


_POOL_SIZE = 4096
_fork_generation = 0


def _forked() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_forked)


class _Pool(threading.local):
    def __init__(self) -> None:
        self.data = b""
        self.pos = 0
        self.generation = -1


_pool = _Pool()


def public_random(size: int) -> bytes:
    """Random bytes for values that go on the wire in the clear: box nonces, message ids.

    Drawn from the OS 4 KiB at a time per thread and handed out once each, because every
    `os.urandom` releases the GIL: with several RPC threads in one process (a terminal's
    workers, a node's onward workers, bench/rpc.py's 8 clients) each release is a GIL hand-off
    and a pair of context switches, which cost more than the randomness. The pool is per thread
    (no lock) and dropped in a forked child, which would otherwise repeat its parent's nonces.
    Never for secrets: `random_bytes`.
    """
    pool = _pool
    start = pool.pos
    end = start + size
    if end > len(pool.data) or pool.generation != _fork_generation:
        if size > _POOL_SIZE // 4:
            return os.urandom(size)
        pool.data = os.urandom(_POOL_SIZE)
        pool.generation = _fork_generation
        start, end = 0, size
    pool.pos = end
    return pool.data[start:end]


def blake2b_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


_NULL = _ffi.NULL
_new_bytes = partial(_ffi.new, "unsigned char[]")


# -- signatures ----------------------------------------------------------------------------------


class Signer:
    """An Ed25519 signing key, derived deterministically from a 32-byte seed."""

    __slots__ = ("_secret", "seed", "verify_key")

    def __init__(self, seed: bytes) -> None:
        _check_len("signing seed", seed, KEY_SIZE)
        self.seed = seed
        self.verify_key, self._secret = _sodium.crypto_sign_seed_keypair(seed)

    @classmethod
    def generate(cls) -> Signer:
        return cls(random_bytes(KEY_SIZE))

    def sign(self, message: bytes) -> bytes:
        """The detached 64-byte signature of `message`."""
        # libsodium writes signature ‖ message; only the first 64 bytes are copied out.
        signed = _new_bytes(len(message) + SIGNATURE_SIZE)
        if _lib.crypto_sign(signed, _NULL, message, len(message), self._secret) != 0:
            raise KeyStoreError("libsodium refused to sign")  # never for a valid key
        signature: bytes = _ffi.buffer(signed, SIGNATURE_SIZE)[:]
        return signature


def verify(verify_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is `verify_key`'s Ed25519 signature of `message`; never raises."""
    if len(signature) != SIGNATURE_SIZE or len(verify_key) != KEY_SIZE:
        return False
    signed = signature + message
    # crypto_sign_open with a NULL message pointer verifies without copying the message out.
    return bool(_lib.crypto_sign_open(_NULL, _NULL, signed, len(signed), verify_key) == 0)


# -- public-key boxes ----------------------------------------------------------------------------


class BoxSecret:
    """A Curve25519 private key for crypto_box, independent of the signing key."""

    __slots__ = ("public_key", "secret")

    def __init__(self, secret: bytes) -> None:
        _check_len("box secret key", secret, KEY_SIZE)
        self.secret = secret
        self.public_key = _sodium.crypto_scalarmult_base(secret)

    @classmethod
    def generate(cls) -> BoxSecret:
        return cls(random_bytes(KEY_SIZE))


class Box:
    """crypto_box between us and one peer with the shared key precomputed (crypto_box_beforenm).

    The output layout is nonce (24) ‖ MAC+ciphertext, the same as PyNaCl's `Box.encrypt`. Nonces
    are random (`public_random`): 192 bits make collisions negligible without any per-peer
    counter state.
    """

    __slots__ = ("_shared",)

    def __init__(self, own: BoxSecret, peer_public: bytes) -> None:
        _check_len("peer box key", peer_public, KEY_SIZE)
        try:
            self._shared = _sodium.crypto_box_beforenm(peer_public, own.secret)
        except _nacl_exc.CryptoError as exc:  # e.g. a low-order point
            raise KeyStoreError(f"unusable peer box key: {exc}") from None

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = public_random(NONCE_SIZE)
        size = len(plaintext) + MAC_SIZE
        out = _new_bytes(size)
        if _lib.crypto_box_easy_afternm(out, plaintext, len(plaintext), nonce, self._shared) != 0:
            raise KeyStoreError("libsodium refused to box")  # only for absurd lengths
        boxed: bytes = _ffi.buffer(out, size)[:]
        return nonce + boxed

    def decrypt(self, data: bytes) -> bytes | None:
        """The plaintext, or None when `data` was not boxed by this peer for us (or was altered)."""
        size = len(data) - BOX_OVERHEAD
        if size < 0:
            return None
        out = _new_bytes(size or 1)
        boxed = data[NONCE_SIZE:]
        if _lib.crypto_box_open_easy_afternm(
            out, boxed, len(boxed), data[:NONCE_SIZE], self._shared
        ):
            return None
        plaintext: bytes = _ffi.buffer(out, size)[:]
        return plaintext


# -- keys at rest --------------------------------------------------------------------------------


def derive_key(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    """A SecretBox key from a passphrase with argon2id."""
    _check_len("salt", salt, SALT_SIZE)
    try:
        return _argon2id.kdf(KEY_SIZE, passphrase, salt, opslimit=opslimit, memlimit=memlimit)
    except _nacl_exc.CryptoError as exc:
        raise KeyStoreError(f"argon2id parameters rejected: {exc}") from None


def secretbox_seal(key: bytes, plaintext: bytes) -> bytes:
    _check_len("secretbox key", key, KEY_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    return nonce + _sodium.crypto_secretbox(plaintext, nonce, key)


def secretbox_open(key: bytes, data: bytes) -> bytes | None:
    """The plaintext, or None for a wrong key or altered data."""
    _check_len("secretbox key", key, KEY_SIZE)
    if len(data) < BOX_OVERHEAD:
        return None
    try:
        return _sodium.crypto_secretbox_open(data[NONCE_SIZE:], data[:NONCE_SIZE], key)
    except _nacl_exc.CryptoError:
        return None
