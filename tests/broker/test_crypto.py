"""暗号基盤: the direct libsodium calls agree with PyNaCl's public API, byte for byte.

broker/crypto.py calls libsodium's cffi functions without PyNaCl's wrappers (hot path); these
properties pin that they compute exactly what the documented wrappers compute.
"""

from __future__ import annotations

import os
import threading

import nacl.public
import nacl.signing
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import crypto

seeds = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=2048)


@settings(max_examples=60)
@given(seeds, messages)
def test_signature_is_pynacl_signature(seed: bytes, message: bytes) -> None:
    signer = crypto.Signer(seed)
    expected = nacl.signing.SigningKey(seed).sign(message).signature
    assert signer.sign(message) == expected
    assert crypto.verify(signer.verify_key, message, expected)


@settings(max_examples=60)
@given(seeds, messages, st.integers(min_value=0, max_value=8 * 64 - 1))
def test_any_flipped_bit_fails_verification(seed: bytes, message: bytes, bit: int) -> None:
    signer = crypto.Signer(seed)
    signature = bytearray(signer.sign(message))
    signature[bit // 8] ^= 1 << (bit % 8)
    assert not crypto.verify(signer.verify_key, message, bytes(signature))
    if message:
        altered = bytearray(message)
        altered[0] ^= 1
        assert not crypto.verify(signer.verify_key, bytes(altered), signer.sign(message))


@settings(max_examples=60)
@given(seeds, seeds, messages)
def test_box_interoperates_with_pynacl(ours: bytes, theirs: bytes, plaintext: bytes) -> None:
    a, b = crypto.BoxSecret(ours), crypto.BoxSecret(theirs)
    boxed = crypto.Box(a, b.public_key).encrypt(plaintext)
    assert len(boxed) == len(plaintext) + crypto.BOX_OVERHEAD
    peer = nacl.public.Box(nacl.public.PrivateKey(theirs), nacl.public.PublicKey(a.public_key))
    assert peer.decrypt(boxed) == plaintext
    reply = peer.encrypt(plaintext)
    assert crypto.Box(a, b.public_key).decrypt(bytes(reply)) == plaintext
    # a box for someone else, an altered byte or a truncated box does not open
    stranger = crypto.BoxSecret(b"\x07" * 32)
    if ours != stranger.secret:
        assert crypto.Box(stranger, b.public_key).decrypt(boxed) is None
    tampered = bytearray(boxed)
    tampered[-1] ^= 0x80
    assert crypto.Box(b, a.public_key).decrypt(bytes(tampered)) is None
    assert crypto.Box(b, a.public_key).decrypt(boxed[: crypto.BOX_OVERHEAD - 1]) is None
    assert crypto.Box(b, a.public_key).decrypt(boxed) == plaintext


def test_public_random_never_repeats_within_or_across_threads() -> None:
    drawn: list[bytes] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [crypto.public_random(24) for _ in range(500)]  # crosses pool refills
        with lock:
            drawn.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(drawn) == 2000 and all(len(b) == 24 for b in drawn)
    assert len(set(drawn)) == len(drawn)


def test_a_forked_child_does_not_repeat_its_parents_nonces() -> None:
    """The pool is copied by fork(); a child continuing it would reuse the parent's nonces under
    the same shared keys."""
    crypto.public_random(24)  # the pool is filled, with bytes left to hand out
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next draw, then leave without cleanup handlers
        os.write(write_end, crypto.public_random(24))
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 24)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child) == 24
    assert child != crypto.public_random(24)


def test_large_public_random_requests_are_served_whole() -> None:
    big = crypto.public_random(5000)
    assert len(big) == 5000 and big != crypto.public_random(5000)
