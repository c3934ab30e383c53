"""カード読取 (card reading): the APDU conversations a terminal holds with a My Number card.

Everything here talks to a ``Transport`` — one method, ``transmit(apdu) -> (data, sw)`` — so the
same code runs against pcscd (``pcsc.PcscTransport``) in card tests and the terminal, and against
the virtual card's APDU engine in process (``virtual.EngineTransport``) in unit tests. Status
words become ``CardError``s through ``errors.error_for_status``; a wrong PIN surfaces as
``WrongPin(tries_left)`` and a used-up counter as ``PinBlocked``.

Sequence for CS-2 本人確認 (cards.md §1.5): SELECT 券面事項入力補助AP, SELECT key 0011,
VERIFY, SELECT EF 0001 / READ BINARY, SELECT EF 0002 / READ BINARY; then SELECT 住基AP,
SELECT key 001C, VERIFY, SELECT EF 0001 (ours) / READ BINARY for the 住民票コード.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Protocol

from . import constants as c
from .errors import (
    InvalidPinFormat,
    MalformedCardData,
    NotMyNumberCard,
    PinBlocked,
    UnexpectedStatus,
    check_status,
)
from .tlv import object_length, parse_attributes, parse_my_number, parse_resident_code


class Transport(Protocol):
    """Sends one command APDU and returns the response data and status word.

    Implementations resolve 61xx / 6Cxx themselves and raise ``CardError`` (NoCard,
    CardRemoved, ReaderUnavailable) for transport failures; status words are returned.
    """

    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...


@dataclass(frozen=True, slots=True)
class CardData:
    """What CS-2 needs from the 券面事項入力補助AP. ``repr`` hides the 個人番号."""

    individual_number: str = field(repr=False)
    name: str
    address: str
    birth_date: str  # YYYYMMDD
    sex: str  # 1 男, 2 女, 9 適用不能, 0 不明


@dataclass(frozen=True, slots=True)
class CardInfo:
    """共通カードAP EF 0001 record 1: カード製造番号, 交付市町村 (5 digits), 有効期限."""

    serial: str
    municipality_code5: str
    expires: str


# --- APDU builders -------------------------------------------------------------------------------


def apdu(ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    """A short command APDU; ``le`` 256 is encoded as 00."""
    if len(data) > 255:
        raise ValueError("short APDUs carry at most 255 data bytes")
    out = bytes([c.CLA_ISO, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        if not 1 <= le <= 256:
            raise ValueError("Le must be 1..256")
        out += bytes([le & 0xFF])
    return out


def select_df(transport: Transport, aid: bytes) -> None:
    """Select an application by its full DF name; also drops the security status."""
    _, sw = transport.transmit(apdu(c.INS_SELECT, c.P1_SELECT_DF_NAME, c.P2_NO_FCI, aid))
    check_status(sw)


def select_ef(transport: Transport, fid: int) -> None:
    _, sw = transport.transmit(
        apdu(c.INS_SELECT, c.P1_SELECT_EF, c.P2_NO_FCI, struct.pack(">H", fid))
    )
    check_status(sw)


def verify_pin(transport: Transport, kind: c.PinKind, pin: str) -> None:
    """VERIFY the selected key; refuses a malformed PIN locally so it costs no try."""
    if not c.pin_format_ok(kind, pin):
        raise InvalidPinFormat()
    _, sw = transport.transmit(apdu(c.INS_VERIFY, 0x00, c.P2_VERIFY_SPECIFIC, pin.encode("ascii")))
    check_status(sw)


def _query_tries(transport: Transport) -> int:
    """Retry query (VERIFY with no data) on the selected key; uses no try."""
    _, sw = transport.transmit(apdu(c.INS_VERIFY, 0x00, c.P2_VERIFY_SPECIFIC))
    if sw & 0xFFF0 == c.SW_VERIFY_FAILED_BASE:
        return sw & 0x000F
    if sw in (c.SW_AUTH_METHOD_BLOCKED, c.SW_REFERENCE_BLOCKED):
        return 0
    check_status(sw)
    # 9000: some cards answer so when the key is already verified; the counter is then full.
    raise UnexpectedStatus(sw, detail="retry query answered 9000")


def read_binary(transport: Transport, offset: int, le: int) -> tuple[bytes, bool]:
    """One READ BINARY; returns (data, end_of_file_reached)."""
    if not 0 <= offset <= c.MAX_EF_SIZE:
        raise ValueError("offset is 15 bits")
    data, sw = transport.transmit(apdu(c.INS_READ_BINARY, offset >> 8, offset & 0xFF, le=le))
    if sw == c.SW_OFFSET_OUT_OF_FILE:
        return b"", True
    if sw == c.SW_END_OF_FILE_WARNING:
        return data, True
    check_status(sw)
    if len(data) > le:
        raise MalformedCardData(detail=f"card sent {len(data)} bytes for Le={le}")
    return data, len(data) < le


def read_object(transport: Transport) -> bytes:
    """Read the TLV object in the selected EF: a 7-byte probe for the length, then the rest.

    Returns exactly the object's bytes (filler is not read). A file that ends before its own
    length says is ``MalformedCardData``.
    """
    head, eof = read_binary(transport, 0, c.HEADER_PROBE_LEN)
    total = object_length(head)
    if total > c.MAX_EF_SIZE + 1:
        raise MalformedCardData(detail=f"object claims {total} bytes")
    buf = bytearray(head[:total])
    while len(buf) < total:
        if eof:
            raise MalformedCardData(detail=f"file ends after {len(buf)} of {total} bytes")
        chunk, eof = read_binary(transport, len(buf), min(c.READ_CHUNK, total - len(buf)))
        if not chunk and not eof:
            raise MalformedCardData(detail="card returned no data before the end of the file")
        buf += chunk
    return bytes(buf[:total])


# --- high-level operations -----------------------------------------------------------------------


def _verify_in(transport: Transport, kind: c.PinKind, pin: str) -> None:
    """Select the PIN's application and key, then VERIFY it."""
    if not c.pin_format_ok(kind, pin):
        raise InvalidPinFormat()
    aid, key = c.PIN_LOCATIONS[kind]
    select_df(transport, aid)
    select_ef(transport, key)
    verify_pin(transport, kind, pin)


def read_my_number_card(transport: Transport, pin: str) -> CardData:
    """個人番号 and 基本4情報 from the 券面事項入力補助AP, opened by its 4-digit PIN."""
    _verify_in(transport, c.PinKind.KENHOJO, pin)
    select_ef(transport, c.EF_MY_NUMBER)
    number = parse_my_number(read_object(transport))
    select_ef(transport, c.EF_ATTRIBUTES)
    attrs = parse_attributes(read_object(transport))
    return CardData(number, attrs.name, attrs.address, attrs.birth_date, attrs.sex)


def read_resident_code(transport: Transport, juki_pin: str) -> str:
    """住民票コード from our simulated 住基AP EF 0001, opened by the 住民基本台帳用暗証番号."""
    _verify_in(transport, c.PinKind.JUKI, juki_pin)
    select_ef(transport, c.EF_RESIDENT_CODE)
    return parse_resident_code(read_object(transport))


def pin_tries_left(transport: Transport, which: c.PinKind) -> int:
    """Tries left on a PIN without spending one (0 = blocked)."""
    aid, key = c.PIN_LOCATIONS[which]
    select_df(transport, aid)
    select_ef(transport, key)
    return _query_tries(transport)


def ensure_pin_usable(transport: Transport, which: c.PinKind) -> int:
    """Like ``pin_tries_left`` but raises ``PinBlocked`` at 0, before the resident types."""
    tries = pin_tries_left(transport, which)
    if tries == 0:
        raise PinBlocked(detail="retry query")
    return tries


def read_card_info(transport: Transport) -> CardInfo:
    """共通カードAP EF 0001 record 1 (free read): ``01 1C`` + serial 15 + 市町村 5 + 期限 8."""
    select_df(transport, c.AID_COMMON)
    select_ef(transport, c.EF_COMMON_INFO)
    data, sw = transport.transmit(apdu(c.INS_READ_RECORD, 1, c.P2_RECORD_NUMBER, le=256))
    if sw == c.SW_RECORD_NOT_FOUND:
        raise NotMyNumberCard(detail="共通AP record 1 missing")
    check_status(sw)
    if len(data) != 30 or data[:2] != b"\x01\x1c" or not data[2:].isdigit():
        raise MalformedCardData(detail="共通AP EF0001 record 1 is not 01 1C + 28 digits")
    text = data[2:].decode("ascii")
    return CardInfo(serial=text[:15], municipality_code5=text[15:20], expires=text[20:])
