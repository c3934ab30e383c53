"""操作者識別カード (operator identification card): our own applet and its reader side.

Juki-net terminals once gated sessions with an 操作者識別カード + password (cards.md §5). No
public layout exists, so this applet is **ours**: application ``AID_OPERATOR`` (an unregistered
ISO 7816-5 "F" AID) with

* EF 0001 — ``FF 30 <len> <ASCII 操作者ID>``, free read;
* EF 0002 — ``FF 31 20 <32-byte Ed25519 public key>``, free read;
* INTERNAL AUTHENTICATE ``00 88 00 00 Lc <challenge> 00`` — the card signs
  ``SIGNATURE_CONTEXT + challenge`` with its Ed25519 key and returns the 64-byte signature.

The context prefix keeps the card from being a signing oracle for anything else in the system
(envelopes sign under ``juki-env-v1``). The terminal's login sends a fresh random challenge and
verifies the answer against the public key registered for the operator, never against the key
the card itself reports. PyNaCl is imported here for the card-side signature and the
verification helper; the rest of tui/card stays free of it.
"""

from __future__ import annotations

import os

import nacl.exceptions
import nacl.signing

from . import constants as c
from .errors import (
    MalformedCardData,
    NotMyNumberCard,
    NotOperatorCard,
    UnexpectedStatus,
    check_status,
)
from .image import OperatorImage
from .reader import Transport, apdu, read_object, select_df, select_ef
from .tlv import encode_tlv, read_header

SIGNATURE_CONTEXT = b"juki-operator-card-v1\x00"
CHALLENGE_MIN = 16
CHALLENGE_MAX = 128
SIGNATURE_LEN = 64


def new_operator_image(
    operator_id: str,
    *,
    serial: str,
    municipality_code: str,
    municipality_name: str,
    expires: str,
    seed: bytes | None = None,
) -> OperatorImage:
    """A fresh operator card with a new (or the given) Ed25519 key."""
    key = nacl.signing.SigningKey(seed if seed is not None else os.urandom(32))
    return OperatorImage(
        serial=serial,
        municipality_code=municipality_code,
        municipality_name=municipality_name,
        expires=expires,
        operator_id=operator_id,
        private_key_seed=bytes(key),
        public_key=bytes(key.verify_key),
    )


# --- card side (used by virtual.CardEngine) ------------------------------------------------------


def operator_files(image: OperatorImage) -> dict[int, bytes]:
    return {
        c.EF_OPERATOR_ID: encode_tlv(c.TAG_OPERATOR_ID, image.operator_id.encode("ascii")),
        c.EF_OPERATOR_PUBLIC_KEY: encode_tlv(c.TAG_OPERATOR_PUBLIC_KEY, image.public_key),
    }


def card_sign(seed: bytes, challenge: bytes) -> bytes:
    """What the card computes for INTERNAL AUTHENTICATE."""
    signed = nacl.signing.SigningKey(seed).sign(SIGNATURE_CONTEXT + challenge)
    return signed.signature


# --- reader side ---------------------------------------------------------------------------------


def _select_operator_ap(transport: Transport) -> None:
    try:
        select_df(transport, c.AID_OPERATOR)
    except NotMyNumberCard as exc:  # 6A82: no such application on this card
        raise NotOperatorCard(detail=exc.detail) from exc


def _read_ef(transport: Transport, fid: int, tag: int) -> bytes:
    select_ef(transport, fid)
    data = read_object(transport)
    got, start, end = read_header(data, 0, f"operator EF{fid:04X}")
    if got != tag or end != len(data):
        raise MalformedCardData(detail=f"operator EF{fid:04X}: unexpected layout")
    return data[start:end]


def operator_card_id(transport: Transport) -> str:
    """操作者ID stored on the card (free read)."""
    _select_operator_ap(transport)
    raw = _read_ef(transport, c.EF_OPERATOR_ID, c.TAG_OPERATOR_ID)
    if not raw or not raw.isascii() or not raw.decode("ascii").isprintable():
        raise MalformedCardData(detail="operator id is not printable ASCII")
    return raw.decode("ascii")


def operator_public_key(transport: Transport) -> bytes:
    """The key the card claims; for display and enrolment only, never to authenticate."""
    _select_operator_ap(transport)
    raw = _read_ef(transport, c.EF_OPERATOR_PUBLIC_KEY, c.TAG_OPERATOR_PUBLIC_KEY)
    if len(raw) != 32:
        raise MalformedCardData(detail="public key is not 32 bytes")
    return raw


def sign_challenge(transport: Transport, challenge: bytes) -> bytes:
    """Ask the card to sign ``challenge``; returns the 64-byte Ed25519 signature."""
    if not CHALLENGE_MIN <= len(challenge) <= CHALLENGE_MAX:
        raise ValueError(f"challenge must be {CHALLENGE_MIN}..{CHALLENGE_MAX} bytes")
    _select_operator_ap(transport)
    data, sw = transport.transmit(apdu(c.INS_INTERNAL_AUTHENTICATE, 0, 0, challenge, le=256))
    check_status(sw)
    if len(data) != SIGNATURE_LEN:
        raise UnexpectedStatus(sw, detail=f"signature of {len(data)} bytes")
    return data


def verify_challenge(public_key: bytes, challenge: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the card's answer to ``challenge`` under ``public_key``."""
    try:
        nacl.signing.VerifyKey(public_key).verify(SIGNATURE_CONTEXT + challenge, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True
