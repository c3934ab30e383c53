"""カード定数 (card constants): AIDs, file ids, status words and PIN rules.

The reader and the virtual card import these from one place so that the two sides of the
PC/SC conversation can never disagree about a byte. Values marked "real" follow the public
research in ../shared/docs/cards.md (§1); values marked "ours" are conventions of this
emulator that no real card uses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# --- Applications (DF names) -------------------------------------------------------------------

#: 券面事項入力補助AP (real): 個人番号 and 基本4情報.
AID_KENHOJO: Final = bytes.fromhex("D3921000310001010408")
#: 券面事項確認AP (real). Not emulated; listed so a reader can name it in messages.
AID_KENKAKU: Final = bytes.fromhex("D3921000310001010402")
#: 住基AP (real AID). Its EF 0001 with the 住民票コード is ours (cards.md §1.7).
AID_JUKI: Final = bytes.fromhex("D3921000310001010401")
#: 公的個人認証AP / JPKI-AP (real). Only the signing-PIN key is emulated.
AID_JPKI: Final = bytes.fromhex("D392F000260100000001")
#: 共通カードAP (real): EF 0001 record 1 = serial, issuing municipality, expiry.
AID_COMMON: Final = bytes.fromhex("D3921000310001010100")
#: 操作者識別カードAP (ours). ISO 7816-5 category "F" = proprietary, unregistered: it can
#: collide with no registered application. "F0" + ASCII "JUKIOP01".
AID_OPERATOR: Final = bytes.fromhex("F04A554B494F503031")

# --- Elementary files and keys (2-byte ids) ----------------------------------------------------

#: 券面事項入力補助AP EF 0001: 個人番号 (`FF 10 0C` + 12 digits + `FF FF`).
EF_MY_NUMBER: Final = 0x0001
#: 券面事項入力補助AP EF 0002: 基本4情報 (`FF 20` with the DF21 offset table).
EF_ATTRIBUTES: Final = 0x0002
#: 券面事項入力補助AP key: 券面事項入力補助用暗証番号.
KEY_KENHOJO_PIN: Final = 0x0011
#: 住基AP EF 0001 (ours): 住民票コード (`FF 10 0B` + 11 digits + filler), read after 001C.
EF_RESIDENT_CODE: Final = 0x0001
#: 住基AP key (real id): 住民基本台帳用暗証番号.
KEY_JUKI_PIN: Final = 0x001C
#: JPKI-AP key: 署名用電子証明書の暗証番号.
KEY_SIGNING_PIN: Final = 0x001B
#: 共通カードAP EF 0001: record-structured, record 1 = simple-TLV `01 1C` + 28 digits.
EF_COMMON_INFO: Final = 0x0001
#: Operator AP (ours) EF 0001: 操作者ID, free read.
EF_OPERATOR_ID: Final = 0x0001
#: Operator AP (ours) EF 0002: Ed25519 public key, free read.
EF_OPERATOR_PUBLIC_KEY: Final = 0x0002

# --- TLV tags ------------------------------------------------------------------------------------

TAG_MY_NUMBER: Final = 0xFF10
TAG_ATTRIBUTES: Final = 0xFF20
TAG_OFFSETS: Final = 0xDF21
TAG_NAME: Final = 0xDF22
TAG_ADDRESS: Final = 0xDF23
TAG_BIRTH: Final = 0xDF24
TAG_SEX: Final = 0xDF25
#: Ours, same private tag as EF 0001 of the 券面事項入力補助AP, but 11 digits long.
TAG_RESIDENT_CODE: Final = 0xFF10
#: Ours: operator id (ASCII) and public key in the operator AP.
TAG_OPERATOR_ID: Final = 0xFF30
TAG_OPERATOR_PUBLIC_KEY: Final = 0xFF31

MY_NUMBER_LEN: Final = 12
RESIDENT_CODE_LEN: Final = 11
#: Bytes readers ask for first, enough for any tag + length header we use.
HEADER_PROBE_LEN: Final = 7
#: READ BINARY P1-P2 carries a 15-bit offset, so no EF we build may be longer.
MAX_EF_SIZE: Final = 0x7FFF
#: Bytes per READ BINARY after the header probe (short Le = 0xFF; 00 would mean 256).
READ_CHUNK: Final = 0xFF
#: Filler bytes real cards leave after the TLV object.
FILLER_BYTES: Final = frozenset({0xFF, 0x00})

#: 性別 codes on the card (ISO 5218 / JIS X 0303).
SEX_CODES: Final = frozenset({"0", "1", "2", "9"})

# --- Instructions --------------------------------------------------------------------------------

CLA_ISO: Final = 0x00
INS_SELECT: Final = 0xA4
INS_VERIFY: Final = 0x20
INS_READ_BINARY: Final = 0xB0
INS_READ_RECORD: Final = 0xB2
INS_INTERNAL_AUTHENTICATE: Final = 0x88
INS_GET_RESPONSE: Final = 0xC0
P1_SELECT_DF_NAME: Final = 0x04
P1_SELECT_EF: Final = 0x02
P2_NO_FCI: Final = 0x0C
P2_VERIFY_SPECIFIC: Final = 0x80
P2_RECORD_NUMBER: Final = 0x04

# --- Status words --------------------------------------------------------------------------------

SW_OK: Final = 0x9000
SW_END_OF_FILE_WARNING: Final = 0x6282  # ISO: end of file reached before Le bytes
SW_VERIFY_FAILED_NO_COUNTER: Final = 0x6300
SW_VERIFY_FAILED_BASE: Final = 0x63C0  # | tries left (low nibble)
SW_WRONG_LENGTH: Final = 0x6700
SW_INCOMPATIBLE_FILE: Final = 0x6981  # e.g. READ BINARY on a key
SW_SECURITY_NOT_SATISFIED: Final = 0x6982
SW_AUTH_METHOD_BLOCKED: Final = 0x6983  # ISO; real cards answer 6984 instead
SW_REFERENCE_BLOCKED: Final = 0x6984  # JICSAP: every VERIFY after the counter ran out
SW_NO_CURRENT_EF: Final = 0x6986
SW_WRONG_DATA: Final = 0x6A80
SW_FILE_NOT_FOUND: Final = 0x6A82
SW_RECORD_NOT_FOUND: Final = 0x6A83
SW_WRONG_P1P2: Final = 0x6A86
SW_OFFSET_OUT_OF_FILE: Final = 0x6B00
SW_INS_NOT_SUPPORTED: Final = 0x6D00
SW_CLA_NOT_SUPPORTED: Final = 0x6E00


def sw_tries_left(tries: int) -> int:
    """Status word of a failed VERIFY or a retry query reporting ``tries`` left (0..15)."""
    if not 0 <= tries <= 0xF:
        raise ValueError("tries must fit in one nibble")
    return SW_VERIFY_FAILED_BASE | tries


# --- PINs ----------------------------------------------------------------------------------------


class PinKind(StrEnum):
    """The user PINs (暗証番号) the emulator knows; values are the image file's keys."""

    KENHOJO = "kenhojo"  # 券面事項入力補助用暗証番号: 4 digits, 3 tries
    JUKI = "juki"  # 住民基本台帳用暗証番号: 4 digits, 3 tries
    SIGNING = "signing"  # 署名用電子証明書の暗証番号: 6-16 of A-Z0-9, 5 tries


#: Maximum tries per PIN (the counter a success resets to).
PIN_MAX_TRIES: Final[dict[PinKind, int]] = {
    PinKind.KENHOJO: 3,
    PinKind.JUKI: 3,
    PinKind.SIGNING: 5,
}
#: Allowed PIN lengths (inclusive).
PIN_LENGTHS: Final[dict[PinKind, tuple[int, int]]] = {
    PinKind.KENHOJO: (4, 4),
    PinKind.JUKI: (4, 4),
    PinKind.SIGNING: (6, 16),
}
#: Japanese names shown to the operator and the resident.
PIN_LABELS: Final[dict[PinKind, str]] = {
    PinKind.KENHOJO: "券面事項入力補助用暗証番号",
    PinKind.JUKI: "住民基本台帳用暗証番号",
    PinKind.SIGNING: "署名用電子証明書の暗証番号",
}
#: Where each PIN lives: (application, key EF).
PIN_LOCATIONS: Final[dict[PinKind, tuple[bytes, int]]] = {
    PinKind.KENHOJO: (AID_KENHOJO, KEY_KENHOJO_PIN),
    PinKind.JUKI: (AID_JUKI, KEY_JUKI_PIN),
    PinKind.SIGNING: (AID_JPKI, KEY_SIGNING_PIN),
}


def pin_format_ok(kind: PinKind, pin: str) -> bool:
    """True when ``pin`` has the shape the card expects, so a typo never costs a try."""
    lo, hi = PIN_LENGTHS[kind]
    if not lo <= len(pin) <= hi or not pin.isascii():
        return False
    if kind is PinKind.SIGNING:
        return all(c.isdigit() or "A" <= c <= "Z" for c in pin)
    return pin.isdigit()


# --- Answer to reset and vpcd --------------------------------------------------------------------


def _atr(historical: bytes) -> bytes:
    """An ATR announcing T=1 with ``historical`` bytes and the TCK that T=1 makes mandatory."""
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for b in body:
        tck ^= b
    return bytes([0x3B]) + body + bytes([tck])


#: ATR of our virtual My Number card (ours: historical bytes "JUKIMYNA"; not a real card's ATR).
ATR_MY_NUMBER: Final = _atr(b"JUKIMYNA")
#: ATR of our virtual operator card (historical bytes "JUKIOPER").
ATR_OPERATOR: Final = _atr(b"JUKIOPER")

VPCD_HOST: Final = "127.0.0.1"
#: vpcd inside pcscd listens on 35963 + slot (Debian's reader.conf: CHANNELID 0x8C7B).
VPCD_BASE_PORT: Final = 35963
VPCD_SLOTS: Final = 2
#: FRIENDLYNAME in /etc/reader.conf.d/vpcd; pcscd appends " 00 <slot>".
VPCD_READER_PREFIX: Final = "Virtual PCD"
#: Slots used by convention: the resident's card and the operator's card.
SLOT_RESIDENT: Final = 0
SLOT_OPERATOR: Final = 1


def vpcd_port(slot: int) -> int:
    """TCP port vpcd listens on for ``slot``."""
    if not 0 <= slot < VPCD_SLOTS:
        raise ValueError(f"vpcd has slots 0..{VPCD_SLOTS - 1}, not {slot}")
    return VPCD_BASE_PORT + slot


def vpcd_reader_name(slot: int) -> str:
    """PC/SC reader name pcscd gives vpcd's ``slot``."""
    vpcd_port(slot)
    return f"{VPCD_READER_PREFIX} 00 {slot:02X}"
