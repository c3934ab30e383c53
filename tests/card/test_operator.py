"""操作者識別カード (ours): id read and challenge signing, in process."""

from __future__ import annotations

import os

import nacl.signing
import pytest

from tui.card import errors as e
from tui.card.operator import (
    SIGNATURE_CONTEXT,
    operator_card_id,
    operator_public_key,
    sign_challenge,
    verify_challenge,
)
from tui.card.virtual import CardEngine, EngineTransport

from .conftest import operator_image, resident_image


def test_card_reports_its_id_and_key() -> None:
    img = operator_image("op-0042")
    t = EngineTransport(CardEngine(img))
    assert operator_card_id(t) == "op-0042"
    assert operator_public_key(t) == img.public_key


def test_signature_verifies_with_the_cards_public_key() -> None:
    img = operator_image()
    challenge = os.urandom(32)
    sig = sign_challenge(EngineTransport(CardEngine(img)), challenge)
    assert verify_challenge(img.public_key, challenge, sig)
    # independent check with PyNaCl: Ed25519 over context + challenge
    nacl.signing.VerifyKey(img.public_key).verify(SIGNATURE_CONTEXT + challenge, sig)
    assert not verify_challenge(img.public_key, os.urandom(32), sig)
    assert not verify_challenge(img.public_key, challenge, sig[:-1] + bytes([sig[-1] ^ 1]))


def test_a_card_with_another_key_fails_verification() -> None:
    registered = operator_image("op-0001")
    impostor = operator_image("op-0001")  # same id, different key
    challenge = os.urandom(32)
    sig = sign_challenge(EngineTransport(CardEngine(impostor)), challenge)
    assert not verify_challenge(registered.public_key, challenge, sig)


def test_seeded_key_is_deterministic() -> None:
    a = operator_image(seed=b"\x01" * 32)
    b = operator_image(seed=b"\x01" * 32)
    assert a.public_key == b.public_key == bytes(nacl.signing.SigningKey(b"\x01" * 32).verify_key)


def test_resident_card_is_not_an_operator_card() -> None:
    t = EngineTransport(CardEngine(resident_image()))
    with pytest.raises(e.NotOperatorCard):
        operator_card_id(t)
    with pytest.raises(e.NotOperatorCard):
        sign_challenge(t, os.urandom(32))


def test_challenge_length_is_checked_on_both_sides() -> None:
    t = EngineTransport(CardEngine(operator_image()))
    with pytest.raises(ValueError):
        sign_challenge(t, b"short")
    t.transmit(b"\x00\xa4\x04\x0c\x09" + bytes.fromhex("F04A554B494F503031"))
    _, sw = t.transmit(bytes.fromhex("00880000040102030400"))  # 4-byte challenge
    assert sw == 0x6700


def test_garbage_keys_do_not_verify() -> None:
    assert not verify_challenge(b"\x00" * 31, b"x" * 32, b"\x00" * 64)
    assert not verify_challenge(operator_image().public_key, b"x" * 32, b"\x00" * 10)
